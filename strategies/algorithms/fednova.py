"""FedNova (Wang et al. 2020) as a small diff over Flower's FedAvg.

It needs, per client, the number of local SGD steps ``K_i``, which the server computes from
the partition sizes and the config (``fedwsa.train.local_step_count``); clients report
nothing new and train as for FedAvg.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg

from fedwsa.fednova import fednova_aggregate, fednova_norm
from fedwsa.run.wire import ARRAYS, METRICS, NUM_EXAMPLES
from strategies.arrays import to_numpy, to_record
from strategies.base import Knobs, Setup, Stateless, Unit
from strategies.grid import PartitionGrid


@dataclass(frozen=True)
class Settings(Knobs):
    """No knobs: ``K_i`` and momentum come from the experiment."""


class FedNova(Stateless, FedAvg):
    """FedNova: the clients' updates, each divided by its ``||a_i||_1`` (local steps and
    momentum), averaged with the example weights and scaled by ``tau_eff``
    (``fedwsa.fednova.fednova_aggregate``). Clients train as for FedAvg."""

    def __init__(self, *, grid: PartitionGrid, steps: Sequence[int], momentum: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.grid, self.steps, self.momentum = grid, list(steps), momentum
        self.x: dict[str, np.ndarray] = {}

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        self.x = to_numpy(arrays)
        return super().configure_train(server_round, arrays, config, grid)

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        good = [m for m in replies if not m.has_error()]
        if not good:
            return None, None
        ys = [to_numpy(m.content[ARRAYS]) for m in good]  # type: ignore[arg-type]
        weights = [float(m.content[METRICS][NUM_EXAMPLES]) for m in good]  # type: ignore[index,arg-type]
        norms = [fednova_norm(self.steps[self.grid.partition_of_reply(m)], self.momentum) for m in good]
        return to_record(fednova_aggregate(self.x, ys, weights, norms)), MetricRecord()


def build(setup: Setup, s: Settings) -> FedNova:
    return FedNova(
        grid=setup.need_grid("fednova"), steps=setup.steps(), momentum=setup.cfg.momentum, **setup.flower
    )


UNIT = Unit(
    "fednova", "FedNova (Wang et al. 2020): updates normalised by each client's local steps and momentum",
    Settings, build, color="tab:orange",
)  # fmt: skip
