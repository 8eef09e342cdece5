"""One client's round, free of Flower: start from the global model, train locally with the
regularizer its settings ask for, return the new state and the report.

``clients/client_app.py`` only decodes the message, calls :func:`local_round` and encodes
the reply.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from fedwsa.device import (
    peak_memory_mb,
    release,
    reset_peak_memory,
    resolve_device,
    seed_torch,
    set_deterministic,
)
from fedwsa.regularizers import make_regularizer
from fedwsa.run.config import ExperimentConfig
from fedwsa.run.factory import client_data, client_model
from fedwsa.run.wire import TrainReply, TrainSettings
from fedwsa.train import derive_seed, train
from fedwsa.wsa import scoped_names


def train_settings(
    cfg: ExperimentConfig, server_round: int, target: np.ndarray | None = None
) -> TrainSettings:
    """The settings the server sends for round ``server_round`` of ``cfg``: local SGD, and
    the knobs of ``cfg.strategy`` (those its strategy adds to the message). Built here
    once, for code that trains clients without a server (benchmarks, tests)."""
    s = cfg.strategy
    return TrainSettings(
        server_round=server_round, lr=cfg.lr, epochs=cfg.epochs, local_steps=cfg.local_steps,
        batch_size=cfg.batch_size, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
        proximal_mu=s.proximal_mu, wsa_lambda=s.wsa_lambda, wsa_distance=s.distance,
        wsa_scope_all=s.scope_all, wsa_normalize=s.wsa_normalize, target=target,
    )  # fmt: skip


def local_round(
    cfg: ExperimentConfig,
    partition_id: int,
    state: dict[str, Tensor],
    settings: TrainSettings,
    correction: dict[str, Tensor] | None = None,
) -> tuple[dict[str, Tensor], TrainReply]:
    """Start from the global ``state``, train locally, return new state and the report;
    ``correction``: SCAFFOLD's ``c - c_i``, added to every step's gradient.

    Batch order is seeded by ``(seeds.train, round, partition_id)``, so a client's
    round is reproducible wherever it runs.
    """
    torch.set_num_threads(cfg.client_threads)
    device = resolve_device(cfg.device)
    set_deterministic(cfg.deterministic)
    x, y = client_data(cfg, partition_id, device)
    model = client_model(cfg, device)  # every parameter and buffer overwritten now
    model.load_state_dict(state)
    names = scoped_names(model, settings.wsa_scope_all) if settings.wsa_lambda > 0 else []  # WSA's only
    regularizer = make_regularizer(
        model, proximal_mu=settings.proximal_mu, wsa_lambda=settings.wsa_lambda,
        target=settings.target, names=names, distance=settings.wsa_distance, normalize=settings.wsa_normalize,
        correction={k: v.to(device) for k, v in correction.items()} if correction else None,
    )  # fmt: skip
    seed = derive_seed(cfg.seeds.train, settings.server_round, partition_id)
    seed_torch(seed)
    reset_peak_memory(device)
    result = train(
        model, x, y, epochs=settings.epochs, steps=settings.local_steps, lr=settings.lr,
        batch_size=settings.batch_size,
        momentum=settings.momentum, weight_decay=settings.weight_decay,
        regularizer=regularizer, generator=torch.Generator().manual_seed(seed),
        precision=cfg.precision,
    )  # fmt: skip
    # copies: the model object is the next round's too (on the GPU, .cpu() copies anyway)
    new_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
    peak = peak_memory_mb(device)
    del regularizer, x, y
    release(device)  # nothing of this round stays on the GPU but the cached dataset and model
    return new_state, TrainReply(result.num_examples, result.loss, peak)
