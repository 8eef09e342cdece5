"""FedAdagrad (Reddi et al. 2021, https://arxiv.org/abs/2003.00295): Flower's, with its moments in
the checkpoints."""

from __future__ import annotations

from dataclasses import dataclass

from flwr.serverapp import strategy as flwr_strategy

from strategies.base import Setup, Unit
from strategies.fedopt import OptKnobs, OptState, opt_kwargs


@dataclass(frozen=True)
class Settings(OptKnobs):
    """Flower's FedAdagrad defaults (``beta_2`` is not used)."""


class FedAdagrad(OptState, flwr_strategy.FedAdagrad):
    """Flower's FedAdagrad."""


def build(setup: Setup, s: Settings) -> FedAdagrad:
    return FedAdagrad(**opt_kwargs(s, setup.cfg.lr), **setup.flower)


UNIT = Unit(
    "fedadagrad",
    "FedAdagrad (Reddi et al. 2021): adaptive server step with Adagrad's accumulated second moment",
    Settings,
    build,
    color="olive",
    strength=("eta",),
)
