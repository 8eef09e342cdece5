"""Every strategy by name, built from the experiment's config."""

from __future__ import annotations

from typing import Any

from flwr.app import MetricRecord, RecordDict
from torch import nn

from fedwsa.run.config import ExperimentConfig
from fedwsa.wsa import model_scope
from strategies.base import FedAvg, FedProx
from strategies.fedwsa import FedWSA


def _no_metrics(records: list[RecordDict], weight_key: str) -> MetricRecord:
    """The round loop records the clients' metrics from the checked replies itself."""
    return MetricRecord()


def build_strategy(cfg: ExperimentConfig, model: nn.Module, names: list[str]) -> FedAvg | FedProx | FedWSA:
    """Flower's FedAvg / FedProx, or our FedWSA (target ``T_1``: ``model``'s scope).

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
    return FedAvg(**common)
