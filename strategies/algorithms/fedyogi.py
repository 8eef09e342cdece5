"""FedYogi (Reddi et al. 2021, https://arxiv.org/abs/2003.00295): Flower's, with its moments in
the checkpoints."""

from __future__ import annotations

from dataclasses import dataclass

from flwr.serverapp import strategy as flwr_strategy

from strategies.base import Setup, Unit
from strategies.fedopt import MomentKnobs, OptState, opt_kwargs


@dataclass(frozen=True)
class Settings(MomentKnobs):
    """Flower's FedYogi defaults (its eta is 0.01)."""

    eta: float = 0.01


class FedYogi(OptState, flwr_strategy.FedYogi):
    """Flower's FedYogi."""


def build(setup: Setup, s: Settings) -> FedYogi:
    return FedYogi(**opt_kwargs(s, setup.cfg.lr), **setup.flower)


UNIT = Unit(
    "fedyogi",
    "FedYogi (Reddi et al. 2021): adaptive server step with Yogi's additive second moment",
    Settings,
    build,
    color="teal",
    strength=("eta",),
)
