"""q-FedAvg (Li et al. 2020, "Fair Resource Allocation in Federated Learning",
https://arxiv.org/abs/1905.10497): Flower's. Stateless.

Its fairness weights use each client's loss: Flower reads the ``train-loss`` the client
reports (the mean loss of its local round), where the paper uses the global model's loss on
the client's data before training. The server cannot compute either (it has no client
data); the loss is checked to be finite (``fedwsa.run.wire.check_reply``), not trusted
further, so a client can shift its own weight by misreporting it."""

from __future__ import annotations

from dataclasses import dataclass

from flwr.serverapp import strategy as flwr_strategy

from fedwsa.run.config import ExperimentConfig
from fedwsa.run.wire import TRAIN_LOSS
from strategies.base import Knobs, Setup, Stateless, Unit, knob


@dataclass(frozen=True)
class Settings(Knobs):
    q: float = 0.1  # 0 is FedAvg-like; larger q weighs clients with a higher loss more (Flower's default)

    def check(self, cfg: ExperimentConfig) -> None:
        knob("q", self.q >= 0, ">= 0", self.q)


class QFedAvg(Stateless, flwr_strategy.QFedAvg):
    """Flower's QFedAvg, with L = 1 / (the clients' learning rate)."""


def build(setup: Setup, s: Settings) -> QFedAvg:
    return QFedAvg(client_learning_rate=setup.cfg.lr, q=s.q, train_loss_key=TRAIN_LOSS, **setup.flower)


UNIT = Unit(
    "qfedavg", "q-FedAvg (Li et al. 2020): updates weighted by the clients' loss to the power q (fairness)",
    Settings, build, color="tab:pink", strength=("q",),
)  # fmt: skip
