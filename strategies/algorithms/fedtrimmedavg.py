"""FedTrimmedAvg (Yin et al. 2018, https://arxiv.org/abs/1803.01498): Flower's coordinate-wise
trimmed mean (unweighted). Stateless."""

from __future__ import annotations

from dataclasses import dataclass

from flwr.serverapp import strategy as flwr_strategy

from fedwsa.run.config import ExperimentConfig
from strategies.base import Knobs, Setup, Stateless, Unit, knob


@dataclass(frozen=True)
class Settings(Knobs):
    beta: float = 0.2  # the fraction cut at each end, per coordinate (Flower's default)

    def check(self, cfg: ExperimentConfig) -> None:
        knob("beta", 0 <= self.beta < 0.5, "in [0, 0.5)", self.beta)


class FedTrimmedAvg(Stateless, flwr_strategy.FedTrimmedAvg):
    """Flower's FedTrimmedAvg."""


def build(setup: Setup, s: Settings) -> FedTrimmedAvg:
    return FedTrimmedAvg(beta=s.beta, **setup.flower)


UNIT = Unit(
    "fedtrimmedavg", "FedTrimmedAvg (Yin et al. 2018): the coordinate-wise mean without the beta extremes",
    Settings, build, color="darkgoldenrod", strength=("beta",),
)  # fmt: skip
