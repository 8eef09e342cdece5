"""SCAFFOLD (Karimireddy et al. 2020) as a small diff over Flower's FedAvg.

It needs, per client, the number of local SGD steps ``K_i``, which the server computes from
the partition sizes and the config (``fedwsa.train.local_step_count``); clients report
nothing new. The client control variates live on the server, one per partition, and travel
to the client as the correction ``c - c_i`` of each round's message: the clients stay
stateless, so the variates survive between rounds wherever a client runs (any virtual node,
any SuperNode), and a checkpoint holds them for a bit-identical resume.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg

from fedwsa.fednova import fednova_norm
from fedwsa.run.wire import ARRAYS
from fedwsa.scaffold import SCAFFOLD_CORRECTION, scaffold_client_control, scaffold_server_control
from strategies.arrays import to_numpy, with_client_arrays
from strategies.base import Knobs, RoundState, Setup, Unit, arrays, tensors
from strategies.grid import PartitionGrid


@dataclass(frozen=True)
class Settings(Knobs):
    """No knobs: global learning rate 1; ``K_i``, lr and momentum come from the experiment."""


class Scaffold(RoundState, FedAvg):
    """SCAFFOLD (option II), global learning rate 1: the model is FedAvg's weighted average
    of the clients' models; ``c_i`` and ``c`` follow ``fedwsa.scaffold``.

    Parameters
    ----------
    grid : the round loop's grid (its node -> partition ids).
    steps : each partition's local steps ``K_i``; ``lr``, ``momentum`` : the clients' SGD.
    """

    def __init__(
        self, *, grid: PartitionGrid, steps: Sequence[int], lr: float, momentum: float, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.grid, self.lr = grid, lr
        self.norms = [fednova_norm(k, momentum) for k in steps]  # K_i for plain SGD
        self.c: dict[str, np.ndarray] = {}  # server control variate (float32), zeros at first
        self.c_i: dict[int, dict[str, np.ndarray]] = {}  # partition id -> its control variate
        self.x: dict[str, np.ndarray] = {}  # the global model sent this round

    def _zeros(self) -> dict[str, np.ndarray]:
        return {k: np.zeros_like(v, dtype=np.float32) for k, v in self.x.items()}

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """FedAvg's messages, each with its client's correction ``c - c_i``."""
        self.x = to_numpy(arrays)
        self.c = self.c or self._zeros()

        def correction(pid: int) -> dict[str, np.ndarray]:
            c_i = self.c_i.get(pid) or self._zeros()
            return {k: self.c[k] - c_i[k] for k in self.c}

        messages = super().configure_train(server_round, arrays, config, grid)
        return with_client_arrays(messages, self.grid, SCAFFOLD_CORRECTION, correction)

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """FedAvg's average; then each client's ``c_i`` from its model, and ``c``."""
        good = [m for m in replies if not m.has_error()]
        arrays, metrics = super().aggregate_train(server_round, good)
        if arrays is None:
            return arrays, metrics
        deltas = []
        for m in good:
            pid = self.grid.partition_of_reply(m)
            old = self.c_i.get(pid) or self._zeros()
            y = to_numpy(m.content[ARRAYS])  # type: ignore[arg-type]
            new = scaffold_client_control(old, self.c, self.x, y, self.lr, self.norms[pid])
            deltas.append({k: new[k] - old[k] for k in new})
            self.c_i[pid] = {k: v.astype(np.float32) for k, v in new.items()}
        c = scaffold_server_control(self.c, deltas, self.grid.num_partitions)
        self.c = {k: v.astype(np.float32) for k, v in c.items()}
        return arrays, metrics

    def state(self) -> dict[str, Any]:
        """The control variates, as tensors (exact in a checkpoint)."""
        return {
            "scaffold_c": tensors(self.c),
            "scaffold_ci": {str(p): tensors(a) for p, a in self.c_i.items()},
        }

    def restore(self, state: dict[str, Any]) -> None:
        self.c = arrays(state["scaffold_c"])
        self.c_i = {int(p): arrays(a) for p, a in state["scaffold_ci"].items()}


def build(setup: Setup, s: Settings) -> Scaffold:
    c = setup.cfg
    return Scaffold(
        grid=setup.need_grid("scaffold"), steps=setup.steps(), lr=c.lr, momentum=c.momentum, **setup.flower
    )


UNIT = Unit(
    "scaffold", "SCAFFOLD (Karimireddy et al. 2020, option II): control variates correct the clients' drift",
    Settings, build, color="tab:purple", client_state=1,
)  # fmt: skip
