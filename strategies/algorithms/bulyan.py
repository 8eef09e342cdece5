"""Bulyan (El Mhamdi et al. 2018, https://arxiv.org/abs/1802.07927): Flower's, on Multi-Krum's
selection. Stateless."""

from __future__ import annotations

from dataclasses import dataclass

from flwr.serverapp import strategy as flwr_strategy

from fedwsa.run.config import ExperimentConfig
from strategies.base import Knobs, Setup, Stateless, Unit, knob


@dataclass(frozen=True)
class Settings(Knobs):
    num_malicious_nodes: int = 0  # f

    def check(self, cfg: ExperimentConfig) -> None:
        f = self.num_malicious_nodes
        knob("num_malicious_nodes", f >= 0, ">= 0", f)
        knob("num_malicious_nodes", cfg.sample_size >= 4 * f + 3,
             f"small enough that the {cfg.sample_size} clients per round are at least 4f + 3", f)  # fmt: skip


class Bulyan(Stateless, flwr_strategy.Bulyan):
    """Flower's Bulyan: Multi-Krum selects n - 2f models, then per coordinate the mean of the
    n - 4f values closest to their median. A round with fewer than 4f + 3 good replies is
    skipped (the loop counts it as a failed round)."""


def build(setup: Setup, s: Settings) -> Bulyan:
    return Bulyan(num_malicious_nodes=s.num_malicious_nodes, **setup.flower)


UNIT = Unit(
    "bulyan", "Bulyan (El Mhamdi et al. 2018): Multi-Krum's selection, then a trimmed mean around the median",
    Settings, build, color="maroon", strength=("num_malicious_nodes",),
)  # fmt: skip
