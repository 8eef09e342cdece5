"""FedAvg (McMahan et al. 2017, https://arxiv.org/abs/1602.05629): Flower's, unchanged."""

from __future__ import annotations

from dataclasses import dataclass

from flwr.serverapp import strategy as flwr_strategy

from strategies.base import Knobs, Stateless, Unit


@dataclass(frozen=True)
class Settings(Knobs):
    """No knobs: the clients' example-weighted average of their models."""


class FedAvg(Stateless, flwr_strategy.FedAvg):
    """Flower's FedAvg."""


UNIT = Unit(
    "fedavg", "FedAvg (McMahan et al. 2017): the example-weighted average of the clients' models",
    Settings, lambda setup, s: FedAvg(**setup.flower), color="tab:blue", dp_mean=True,
)  # fmt: skip
