"""One client's round, free of Flower: start from the global model, train locally with the
regularizer its settings ask for, return the new state and the report.

``clients/client_app.py`` only decodes the message, calls :func:`local_round` and encodes
the reply.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from fedwsa.attacks import choose_attackers, flip_labels
from fedwsa.device import (
    peak_memory_mb,
    release,
    reset_peak_memory,
    resolve_device,
    seed_torch,
    set_deterministic,
)
from fedwsa.regularizers import build_regularizer
from fedwsa.run.config import ExperimentConfig
from fedwsa.run.factory import client_data, client_model, experiment_data
from fedwsa.run.wire import TrainReply, TrainSettings
from fedwsa.terms import Arrays
from fedwsa.train import derive_seed, train


def train_settings(
    cfg: ExperimentConfig, server_round: int, knobs: Mapping[str, Any] | None = None
) -> TrainSettings:
    """The local-SGD settings the server sends for round ``server_round`` of ``cfg``, with a
    strategy's ``knobs`` (its own keys, as its ``configure_train`` adds them). Built here
    once, for code that trains clients without a server (benchmarks, tests)."""
    return TrainSettings(
        server_round=server_round, lr=cfg.lr, epochs=cfg.epochs, local_steps=cfg.local_steps,
        batch_size=cfg.batch_size, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
        knobs=dict(knobs or {}),
    )  # fmt: skip


def local_round(
    cfg: ExperimentConfig,
    partition_id: int,
    state: dict[str, Tensor],
    settings: TrainSettings,
    arrays: Arrays | None = None,
) -> tuple[dict[str, Tensor], TrainReply]:
    """Start from the global ``state``, train locally with the terms ``settings.knobs`` and
    ``arrays`` (the message's per-client state, such as SCAFFOLD's ``c - c_i``) ask for
    (``fedwsa.regularizers``), return the new state and the report.

    Batch order is seeded by ``(seeds.train, round, partition_id)``, so a client's
    round is reproducible wherever it runs.
    """
    torch.set_num_threads(cfg.client_threads)
    device = resolve_device(cfg.device)
    set_deterministic(cfg.deterministic)
    x, y = client_data(cfg, partition_id, device)
    a = cfg.attack  # a simulated attacker that poisons its data (``fedwsa.attacks``)
    if a.kind == "label_flip" and partition_id in choose_attackers(
        cfg.num_clients, a.clients, cfg.seeds.partition
    ):
        y = flip_labels(y, experiment_data(cfg).num_classes)
    model = client_model(cfg, device)  # every parameter and buffer overwritten now
    model.load_state_dict(state)
    regularizer = build_regularizer(model, settings.knobs, arrays, device)
    seed = derive_seed(cfg.seeds.train, settings.server_round, partition_id)
    seed_torch(seed)
    reset_peak_memory(device)
    try:
        result = train(
            model, x, y, epochs=settings.epochs, steps=settings.local_steps, lr=settings.lr,
            batch_size=settings.batch_size,
            momentum=settings.momentum, weight_decay=settings.weight_decay,
            regularizer=regularizer, generator=torch.Generator().manual_seed(seed),
            precision=cfg.precision,
        )  # fmt: skip
    finally:
        if regularizer is not None:
            regularizer.close()  # the model object is the next round's too: no hook stays on it
    # copies: the model object is the next round's too (on the GPU, .cpu() copies anyway)
    new_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
    peak = peak_memory_mb(device)
    del regularizer, x, y
    release(device)  # nothing of this round stays on the GPU but the cached dataset and model
    return new_state, TrainReply(result.num_examples, result.loss, peak)
