"""FedProx (Li et al. 2020, https://arxiv.org/abs/1812.06127): Flower's strategy, which sends
``proximal-mu``; the clients' proximal term is ``fedwsa.fedprox``."""

from __future__ import annotations

from dataclasses import dataclass

from flwr.serverapp import strategy as flwr_strategy

from fedwsa.run.config import ExperimentConfig
from strategies.base import Knobs, Setup, Stateless, Unit, knob


@dataclass(frozen=True)
class Settings(Knobs):
    proximal_mu: float = 0.01  # (mu / 2) ||w - w_global||^2; chosen on a validation split, docs/RESULTS.md

    def check(self, cfg: ExperimentConfig) -> None:
        knob("proximal_mu", self.proximal_mu >= 0, ">= 0", self.proximal_mu)


class FedProx(Stateless, flwr_strategy.FedProx):
    """Flower's FedProx, unchanged: it sends its own ``proximal-mu``."""


def build(setup: Setup, s: Settings) -> FedProx:
    return FedProx(proximal_mu=s.proximal_mu, **setup.flower)


UNIT = Unit(
    "fedprox", "FedProx (Li et al. 2020): clients pulled toward the global model by (mu/2)||w - w_t||^2",
    Settings, build, color="tab:green", strength=("proximal_mu",), dp_mean=True,
)  # fmt: skip
