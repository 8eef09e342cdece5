"""Krum (Blanchard et al. 2017, https://papers.nips.cc/paper/6617): Flower's. Stateless."""

from __future__ import annotations

from dataclasses import dataclass

from flwr.serverapp import strategy as flwr_strategy

from fedwsa.run.config import ExperimentConfig
from strategies.base import Knobs, Setup, Stateless, Unit, knob


@dataclass(frozen=True)
class Settings(Knobs):
    num_malicious_nodes: int = 0  # f, the attackers Krum is to withstand

    def check(self, cfg: ExperimentConfig) -> None:
        f = self.num_malicious_nodes
        knob("num_malicious_nodes", f >= 0, ">= 0", f)
        need = 2 * f + 3
        knob("num_malicious_nodes", cfg.sample_size >= need,
             f"small enough that the {cfg.sample_size} clients per round are at least 2f + 3", f)  # fmt: skip


class Krum(Stateless, flwr_strategy.Krum):
    """Flower's Krum: the one model whose n - f - 2 nearest others are closest."""


def build(setup: Setup, s: Settings) -> Krum:
    return Krum(num_malicious_nodes=s.num_malicious_nodes, **setup.flower)


UNIT = Unit(
    "krum", "Krum (Blanchard et al. 2017): the client model closest to its n - f - 2 nearest others",
    Settings, build, color="black", strength=("num_malicious_nodes",),
)  # fmt: skip
