"""A study's rules, as pure functions over finished runs' files: which tuned value wins,
whether one strategy beats another by the decision rule, and the scope mismatch WSA is
meant to cure. The runner (tuning, final runs, report) is the rest of ``experiments.study``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from experiments.summary import mean_std


def diverged(rows: list[dict[str, Any]], num_classes: int) -> bool:
    """A run that blew up: a non-finite loss in its last round, or accuracy at chance
    (at most 1/num_classes + 1 pp) at the end."""
    last = rows[-1]
    loss = float(last.get("test_loss", float("nan")))
    return not math.isfinite(loss) or float(last["test_accuracy"]) <= 1.0 / num_classes + 0.01


def choose(candidates: list[tuple[float, list[dict[str, Any]]]], num_classes: int) -> float:
    """The tuned value: highest accuracy at the last round (validation in tuning runs);
    ties go to the smaller value; a diverged run ranks last.

    ``candidates``: (value, rounds of metrics.json) for each value of the grid.
    """
    if not candidates:
        raise ValueError("no tuning runs to choose from")

    def rank(c: tuple[float, list[dict[str, Any]]]) -> tuple[bool, float, float]:
        value, rows = c
        return (not diverged(rows, num_classes), float(rows[-1]["test_accuracy"]), -value)

    return max(candidates, key=rank)[0]


@dataclass(frozen=True)
class Decision:
    """One comparison of the decision rule (accuracies in fractions)."""

    verdict: str  # "helps" | "hurts" | "no difference shown"
    diff: float  # mean of the challenger minus mean of the reference
    pooled_sd: float  # sqrt((s_a^2 + s_b^2) / 2)


def decide(challenger: list[float], reference: list[float], k: float = 2.0) -> Decision:
    """The pre-registered rule: the challenger helps if its mean beats the reference's by more
    than ``k`` pooled sample standard deviations, hurts if it trails by more, else no
    difference shown."""
    (ma, sa), (mb, sb) = mean_std(challenger), mean_std(reference)
    s = math.sqrt((sa**2 + sb**2) / 2)
    d = ma - mb
    verdict = "helps" if d > k * s else "hurts" if -d > k * s else "no difference shown"
    return Decision(verdict, d, s)


def _mean(values: list[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return sum(finite) / len(finite) if finite else float("nan")


def mismatch(scopes: dict[str, Any]) -> dict[str, float]:
    """The scope mismatch of one run, over rounds >= 1 that had replies, scoped layers averaged:

    - ``spread``: the clients' sigma after local training, std over clients / mean
      (``client_sigma_std / client_sigma_mean``);
    - ``drop``: how much sigma falls when the clients' models are averaged,
      ``1 - sigma_global / client_sigma_mean``.
    """
    spread, drop = [], []
    for rec in scopes["rounds"]:
        if rec["round"] < 1 or "client_sigma_mean" not in rec:
            continue
        for j, (m, s) in enumerate(zip(rec["client_sigma_mean"], rec["client_sigma_std"], strict=True)):
            if m > 0:
                spread.append(s / m)
                drop.append(1.0 - rec["global"][j][1] / m)
    return {"spread": _mean(spread), "drop": _mean(drop)}


def spearman(x: list[float], y: list[float]) -> float:
    """Spearman's rank correlation (average ranks for ties); NaN for fewer than 3 pairs or a
    constant series."""
    if len(x) != len(y) or len(x) < 3:
        return float("nan")

    def ranks(v: list[float]) -> list[float]:
        order = sorted(range(len(v)), key=lambda i: v[i])
        r = [0.0] * len(v)
        i = 0
        while i < len(order):
            j = i
            while j + 1 < len(order) and v[order[j + 1]] == v[order[i]]:
                j += 1
            for k in range(i, j + 1):
                r[order[k]] = (i + j) / 2 + 1
            i = j + 1
        return r

    rx, ry = ranks(x), ranks(y)
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry, strict=True))
    vx = math.sqrt(sum((a - mx) ** 2 for a in rx))
    vy = math.sqrt(sum((b - my) ** 2 for b in ry))
    return cov / (vx * vy) if vx > 0 and vy > 0 else float("nan")
