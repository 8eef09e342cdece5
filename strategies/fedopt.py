"""What FedAdam, FedYogi and FedAdagrad (Reddi et al. 2021, https://arxiv.org/abs/2003.00295)
share as units: their knobs and their moments in the checkpoints (Flower's ``FedOpt``)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from fedwsa.run.config import ExperimentConfig
from strategies.base import Knobs, RoundState, arrays, knob, tensors


@dataclass(frozen=True)
class OptKnobs(Knobs):
    """Flower's defaults (tune them: ``eta`` is the server's step on the averaged update)."""

    eta: float = 0.1  # server learning rate
    tau: float = 1e-3  # adaptivity: added to sqrt(v)

    def check(self, cfg: ExperimentConfig) -> None:
        knob("eta", self.eta > 0, "> 0", self.eta)
        knob("tau", self.tau > 0, "> 0", self.tau)


@dataclass(frozen=True)
class MomentKnobs(OptKnobs):
    """FedAdam's and FedYogi's decays (FedAdagrad has none: Flower fixes its betas at 0)."""

    beta_1: float = 0.9  # first-moment decay
    beta_2: float = 0.99  # second-moment decay

    def check(self, cfg: ExperimentConfig) -> None:
        super().check(cfg)
        knob("beta_1", 0 <= self.beta_1 < 1, "in [0, 1)", self.beta_1)
        knob("beta_2", 0 <= self.beta_2 < 1, "in [0, 1)", self.beta_2)


class OptState(RoundState):
    """The moments ``m_t`` and ``v_t`` (Flower's ``FedOpt`` keeps them as dicts, or None)."""

    m_t: dict[str, Any] | None
    v_t: dict[str, Any] | None

    def state(self) -> dict[str, Any]:
        return {"fedopt_m": tensors(self.m_t or {}), "fedopt_v": tensors(self.v_t or {})}

    def restore(self, state: dict[str, Any]) -> None:
        self.m_t = arrays(state["fedopt_m"]) or None
        self.v_t = arrays(state["fedopt_v"]) or None


def opt_kwargs(s: OptKnobs, client_lr: float) -> dict[str, Any]:
    """Flower's arguments: the knobs, and ``eta_l``, the clients' learning rate (which Flower
    only logs)."""
    return {**dataclasses.asdict(s), "eta_l": client_lr}
