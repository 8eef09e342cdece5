"""Multi-Krum (Blanchard et al. 2017, https://papers.nips.cc/paper/6617): Flower's. Stateless."""

from __future__ import annotations

from dataclasses import dataclass

from flwr.serverapp import strategy as flwr_strategy

from fedwsa.run.config import ExperimentConfig
from strategies.base import Knobs, Setup, Stateless, Unit, knob


@dataclass(frozen=True)
class Settings(Knobs):
    num_malicious_nodes: int = 0  # f
    num_nodes_to_select: int = 0  # m, the models averaged; 0: n - f (n: clients per round)

    def check(self, cfg: ExperimentConfig) -> None:
        f, m, n = self.num_malicious_nodes, self.num_nodes_to_select, cfg.sample_size
        knob("num_malicious_nodes", f >= 0, ">= 0", f)
        knob(
            "num_malicious_nodes",
            n >= 2 * f + 3,
            f"small enough that the {n} clients per round are at least 2f + 3",
            f,
        )
        knob("num_nodes_to_select", 0 <= m <= n, f"in [0, {n}] (0: n - f)", m)


class MultiKrum(Stateless, flwr_strategy.MultiKrum):
    """Flower's MultiKrum: the example-weighted average of the m best Krum scores."""


def build(setup: Setup, s: Settings) -> MultiKrum:
    m = s.num_nodes_to_select or setup.cfg.sample_size - s.num_malicious_nodes
    return MultiKrum(num_malicious_nodes=s.num_malicious_nodes, num_nodes_to_select=m, **setup.flower)


UNIT = Unit(
    "multikrum", "Multi-Krum (Blanchard et al. 2017): the average of the m models with the best Krum scores",
    Settings, build, color="dimgray", strength=("num_malicious_nodes",),
)  # fmt: skip
