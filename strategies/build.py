"""Every strategy by name, built from the experiment's config."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from flwr.app import MetricRecord, RecordDict
from torch import nn

from fedwsa.run.config import ExperimentConfig
from fedwsa.train import local_step_count
from fedwsa.wsa import model_scope
from strategies.base import FedAvg, FedProx
from strategies.fednova import FedNova
from strategies.fedwsa import FedWSA
from strategies.grid import PartitionGrid
from strategies.scaffold import Scaffold


def _no_metrics(records: list[RecordDict], weight_key: str) -> MetricRecord:
    """The round loop records the clients' metrics from the checked replies itself."""
    return MetricRecord()


Strategy = FedAvg | FedProx | FedWSA | Scaffold | FedNova


def build_strategy(
    cfg: ExperimentConfig, model: nn.Module, names: list[str], grid: PartitionGrid | None = None,
    sizes: Sequence[int] = (),
) -> Strategy:  # fmt: skip
    """Flower's FedAvg / FedProx, or ours: FedWSA (target ``T_1``: ``model``'s scope),
    SCAFFOLD and FedNova (which need the round loop's ``grid`` and the partitions' ``sizes``).

    Sampling is the grid's (``strategies.grid``): the strategy sends to every node it sees."""
    common: dict[str, Any] = dict(
        fraction_train=1.0, fraction_evaluate=0.0, min_train_nodes=1, min_available_nodes=1,
        train_metrics_aggr_fn=_no_metrics,
    )  # fmt: skip
    s = cfg.strategy
    if s.name == "fedprox":
        return FedProx(proximal_mu=s.proximal_mu, **common)
    if s.name == "fedwsa":
        return FedWSA(
            initial_target=model_scope(model, names), names=names, wsa_lambda=s.wsa_lambda,
            distance=s.distance, scope_all=s.scope_all, wsa_normalize=s.wsa_normalize, fusion=s.fusion,
            align_global=s.align_global,
            **common,
        )  # fmt: skip
    if s.name in ("scaffold", "fednova"):
        if grid is None:
            raise ValueError(f"{s.name} needs the round loop's grid and the partition sizes")
        steps = [local_step_count(n, cfg.batch_size, cfg.epochs, cfg.local_steps) for n in sizes]
        if s.name == "scaffold":
            return Scaffold(grid=grid, steps=steps, lr=cfg.lr, momentum=cfg.momentum, **common)
        return FedNova(grid=grid, steps=steps, momentum=cfg.momentum, **common)
    return FedAvg(**common)
