"""FedAdam (Reddi et al. 2021, https://arxiv.org/abs/2003.00295): Flower's, with its moments in
the checkpoints."""

from __future__ import annotations

from dataclasses import dataclass

from flwr.serverapp import strategy as flwr_strategy

from strategies.base import Setup, Unit
from strategies.fedopt import MomentKnobs, OptState, opt_kwargs


@dataclass(frozen=True)
class Settings(MomentKnobs):
    """Flower's FedAdam defaults."""


class FedAdam(OptState, flwr_strategy.FedAdam):
    """Flower's FedAdam."""


def build(setup: Setup, s: Settings) -> FedAdam:
    return FedAdam(**opt_kwargs(s, setup.cfg.lr), **setup.flower)


UNIT = Unit(
    "fedadam",
    "FedAdam (Reddi et al. 2021): adaptive server step with Adam's moments",
    Settings,
    build,
    color="navy",
    strength=("eta",),
)
