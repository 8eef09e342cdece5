"""FedMedian (Yin et al. 2018, https://arxiv.org/abs/1803.01498): Flower's coordinate-wise
median of the clients' models (unweighted). Stateless."""

from __future__ import annotations

from dataclasses import dataclass

from flwr.serverapp import strategy as flwr_strategy

from strategies.base import Knobs, Setup, Stateless, Unit


@dataclass(frozen=True)
class Settings(Knobs):
    """No knobs."""


class FedMedian(Stateless, flwr_strategy.FedMedian):
    """Flower's FedMedian."""


def build(setup: Setup, s: Settings) -> FedMedian:
    return FedMedian(**setup.flower)


UNIT = Unit(
    "fedmedian", "FedMedian (Yin et al. 2018): the coordinate-wise median of the clients' models",
    Settings, build, color="tab:gray",
)  # fmt: skip
