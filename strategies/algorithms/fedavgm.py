"""FedAvgM (Hsu et al. 2019, https://arxiv.org/abs/1909.06335): Flower's, with its momentum
buffer in the checkpoints."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from flwr.serverapp import strategy as flwr_strategy

from fedwsa.run.config import ExperimentConfig
from strategies.base import Knobs, RoundState, Setup, Unit, knob


@dataclass(frozen=True)
class Settings(Knobs):
    server_learning_rate: float = 1.0
    server_momentum: float = 0.9  # Hsu et al.'s beta (Flower's default 0 would be FedAvg)

    def check(self, cfg: ExperimentConfig) -> None:
        knob("server_learning_rate", self.server_learning_rate > 0, "> 0", self.server_learning_rate)
        knob("server_momentum", 0 <= self.server_momentum < 1, "in [0, 1)", self.server_momentum)


class FedAvgM(RoundState, flwr_strategy.FedAvgM):
    """Flower's FedAvgM: ``v <- beta v + (x - avg)``, ``x <- x - eta v``. Its state is the
    momentum ``v``; the model it steps from is the one the loop hands it (the checkpoint's
    after a resume, which is the model it last returned)."""

    def state(self) -> dict[str, Any]:
        v = self.momentum_vector
        return {
            "fedavgm_momentum": None if v is None else [torch.from_numpy(np.array(a, copy=True)) for a in v]
        }

    def restore(self, state: dict[str, Any]) -> None:
        v = state["fedavgm_momentum"]
        self.momentum_vector = None if v is None else [t.numpy() for t in v]


def build(setup: Setup, s: Settings) -> FedAvgM:
    return FedAvgM(
        server_learning_rate=s.server_learning_rate, server_momentum=s.server_momentum, **setup.flower
    )


UNIT = Unit(
    "fedavgm", "FedAvgM (Hsu et al. 2019): the average's step taken with server momentum",
    Settings, build, color="tab:cyan", strength=("server_momentum",),
)  # fmt: skip
