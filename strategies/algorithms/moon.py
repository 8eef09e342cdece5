"""MOON (Li, He, Song 2021, https://arxiv.org/abs/2103.16257) as a small diff over Flower's
FedAvg; the clients' model-contrastive term is ``fedwsa.moon``.

The server averages as FedAvg does and keeps each client's last local model (the one it
sent), one per partition; it travels with that client's next train message (none before its
first round) and is in the checkpoints. Memory: one float32 copy of the model per client that
has trained, on the server and in each checkpoint (``Unit.client_state``); each train message
carries two models.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg

from fedwsa.moon import MOON_MU, MOON_PREVIOUS, MOON_TEMPERATURE
from fedwsa.run.config import ExperimentConfig
from fedwsa.run.wire import ARRAYS
from strategies.arrays import to_numpy, with_client_arrays
from strategies.base import Knobs, RoundState, Setup, Unit, arrays, knob, tensors
from strategies.grid import PartitionGrid


@dataclass(frozen=True)
class Settings(Knobs):
    mu: float = 1.0  # the contrastive term's weight (the paper: 1, or 5 on CIFAR-10)
    temperature: float = 0.5  # tau (the paper's)

    def check(self, cfg: ExperimentConfig) -> None:
        knob("mu", self.mu >= 0, ">= 0", self.mu)
        knob("temperature", self.temperature > 0, "> 0", self.temperature)


class Moon(RoundState, FedAvg):
    """FedAvg that sends ``mu``, ``tau`` and each client's previous local model."""

    def __init__(self, *, grid: PartitionGrid, mu: float, temperature: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.grid, self.mu, self.temperature = grid, mu, temperature
        self.previous: dict[int, dict[str, np.ndarray]] = {}  # partition id -> its last local model

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        config[MOON_MU], config[MOON_TEMPERATURE] = self.mu, self.temperature
        messages = super().configure_train(server_round, arrays, config, grid)
        return with_client_arrays(messages, self.grid, MOON_PREVIOUS, self.previous.get)

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        good = [m for m in replies if not m.has_error()]
        for m in good:  # before Flower's average, which may consume the records
            y = to_numpy(m.content[ARRAYS])  # type: ignore[arg-type]
            self.previous[self.grid.partition_of_reply(m)] = {k: np.array(v, copy=True) for k, v in y.items()}
        return super().aggregate_train(server_round, good)

    def state(self) -> dict[str, Any]:
        return {"moon_previous": {str(p): tensors(a) for p, a in self.previous.items()}}

    def restore(self, state: dict[str, Any]) -> None:
        self.previous = {int(p): arrays(a) for p, a in state["moon_previous"].items()}


def build(setup: Setup, s: Settings) -> Moon:
    return Moon(grid=setup.need_grid("moon"), mu=s.mu, temperature=s.temperature, **setup.flower)


UNIT = Unit(
    "moon", "MOON (Li et al. 2021): a contrastive term keeps local representations near the global model's",
    Settings, build, color="darkviolet", strength=("mu",), client_state=1, dp_mean=True,
)  # fmt: skip
