"""FedDyn (Acar et al. 2021, https://arxiv.org/abs/2111.04263) as a small diff over Flower's
FedAvg; the math and the clients' term are ``fedwsa.feddyn``.

The clients stay stateless: each client's ``g_k`` lives here, one per partition, computed
from the model it sent, and travels with its train message (none before its first round:
zero); the server's ``h`` and every ``g_k`` are in the checkpoints. Memory: one float32 copy
of the model's parameters per client that has trained (``Unit.client_state``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg

from fedwsa.feddyn import FEDDYN_ALPHA, FEDDYN_STATE, feddyn_client_state, feddyn_server
from fedwsa.run.config import ExperimentConfig
from fedwsa.run.wire import ARRAYS
from strategies.arrays import to_numpy, to_record, with_client_arrays
from strategies.base import Knobs, RoundState, Setup, Unit, arrays, knob, tensors
from strategies.grid import PartitionGrid


@dataclass(frozen=True)
class Settings(Knobs):
    alpha: float = 0.01  # the dynamic regulariser's strength (the paper searches 0.1, 0.01, 0.001)

    def check(self, cfg: ExperimentConfig) -> None:
        knob("alpha", self.alpha > 0, "> 0", self.alpha)


class FedDyn(RoundState, FedAvg):
    """FedDyn's server: sends ``alpha`` and each client's ``g_k``; the new model is the
    unweighted mean of the replies minus ``h / alpha`` on the parameters (buffers: the
    plain mean); ``g_k`` and ``h`` follow ``fedwsa.feddyn``.

    Parameters
    ----------
    grid : the round loop's grid (its node -> partition ids); ``params`` : the model's
    parameter names (the regulariser's domain); ``alpha`` ; ``num_clients`` : m, all clients.
    """

    def __init__(
        self, *, grid: PartitionGrid, params: Sequence[str], alpha: float, num_clients: int, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.grid, self.params, self.alpha, self.m = grid, list(params), alpha, num_clients
        self.h: dict[str, np.ndarray] = {}  # zeros at first
        self.g: dict[int, dict[str, np.ndarray]] = {}  # partition id -> its g_k (float32)
        self.x: dict[str, np.ndarray] = {}  # the global model sent this round

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """FedAvg's messages, with ``alpha`` and each client's ``g_k`` (if it has one)."""
        self.x = to_numpy(arrays)
        config[FEDDYN_ALPHA] = self.alpha
        messages = super().configure_train(server_round, arrays, config, grid)
        return with_client_arrays(messages, self.grid, FEDDYN_STATE, self.g.get)

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        good = [m for m in replies if not m.has_error()]
        if not good:
            return None, None
        ys = [to_numpy(m.content[ARRAYS]) for m in good]  # type: ignore[arg-type]
        x = {k: self.x[k].astype(np.float64) for k in self.params}
        zeros = {k: np.zeros(self.x[k].shape) for k in self.params}
        for m, y in zip(good, ys, strict=True):
            pid = self.grid.partition_of_reply(m)
            g = feddyn_client_state(self.g.get(pid, zeros), x, y, self.alpha)
            self.g[pid] = {k: v.astype(np.float32) for k, v in g.items()}
        h, theta = feddyn_server(self.h or zeros, x, ys, self.alpha, self.m)
        self.h = {k: v.astype(np.float32) for k, v in h.items()}
        new = {}
        for k, v in self.x.items():
            if k in theta:
                new[k] = theta[k].astype(v.dtype)
            else:  # a buffer: the plain mean
                new[k] = np.mean([y[k].astype(np.float64) for y in ys], axis=0).astype(v.dtype)
        return to_record(new), MetricRecord()

    def state(self) -> dict[str, Any]:
        return {"feddyn_h": tensors(self.h), "feddyn_g": {str(p): tensors(a) for p, a in self.g.items()}}

    def restore(self, state: dict[str, Any]) -> None:
        self.h = arrays(state["feddyn_h"])
        self.g = {int(p): arrays(a) for p, a in state["feddyn_g"].items()}


def build(setup: Setup, s: Settings) -> FedDyn:
    params = [n for n, _ in setup.model.named_parameters()]
    grid, m = setup.need_grid("feddyn"), setup.cfg.num_clients
    return FedDyn(grid=grid, params=params, alpha=s.alpha, num_clients=m, **setup.flower)


UNIT = Unit(
    "feddyn", "FedDyn (Acar et al. 2021): a dynamic regulariser aligns local and global optima",
    Settings, build, color="tab:brown", strength=("alpha",), client_state=1,
)  # fmt: skip
