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


def last_mean(rows: list[dict[str, Any]], last: int = 1) -> float:
    """Mean accuracy over the ``last`` rounds (of rounds >= 1; all of them if fewer)."""
    trained = [float(r["test_accuracy"]) for r in rows if r.get("round", 1) >= 1] or [
        float(rows[-1]["test_accuracy"])
    ]
    tail = trained[-last:]
    return sum(tail) / len(tail)


def choose(candidates: list[tuple[float, list[dict[str, Any]]]], num_classes: int, last: int = 1) -> float:
    """The tuned value: highest mean accuracy over the ``last`` rounds (validation in tuning
    runs; one round by default, the plan may name more, which one noisy round cannot decide);
    ties go to the smaller value; a diverged run ranks last.

    ``candidates``: (value, rounds of metrics.json) for each value of the grid.
    """
    if not candidates:
        raise ValueError("no tuning runs to choose from")

    def rank(c: tuple[float, list[dict[str, Any]]]) -> tuple[bool, float, float]:
        value, rows = c
        return (not diverged(rows, num_classes), last_mean(rows, last), -value)

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


@dataclass(frozen=True)
class Paired:
    """A challenger against a reference on the same seeds (same partition, initialisation and
    sampling per seed): the per-seed differences and a t-based interval of their mean."""

    seeds: list[Any]
    diffs: list[float]  # challenger minus reference, per seed
    mean: float
    low: float  # the (1 - alpha) interval of the mean difference, t with n - 1 degrees of freedom
    high: float
    p: float  # two-sided, H0: mean difference 0


def paired(challenger: dict[Any, float], reference: dict[Any, float], alpha: float = 0.05) -> Paired:
    """The paired comparison over the seeds both have (at least 2). With every difference equal
    the interval is that one value and ``p`` is 0 (or 1 if it is 0): nothing varies."""
    from scipy import stats

    seeds = sorted(set(challenger) & set(reference))
    if len(seeds) < 2:
        raise ValueError(f"a paired comparison needs 2 common seeds, got {seeds}")
    d = [challenger[s] - reference[s] for s in seeds]
    n = len(d)
    mean = sum(d) / n
    sd = math.sqrt(sum((x - mean) ** 2 for x in d) / (n - 1))
    if sd == 0:
        return Paired(seeds, d, mean, mean, mean, 0.0 if mean != 0 else 1.0)
    se = sd / math.sqrt(n)
    half = float(stats.t.ppf(1 - alpha / 2, n - 1)) * se
    p = float(2 * stats.t.sf(abs(mean / se), n - 1))
    return Paired(seeds, d, mean, mean - half, mean + half, p)


def holm(pvalues: dict[str, float], alpha: float = 0.05) -> dict[str, float]:
    """Holm's step-down adjusted p-values over the comparisons named (reject where <= alpha):
    sorted ascending, ``p_(i) * (m - i)`` (i from 0), made non-decreasing, capped at 1."""
    m = len(pvalues)
    adjusted: dict[str, float] = {}
    running = 0.0
    for i, (name, p) in enumerate(sorted(pvalues.items(), key=lambda kv: kv[1])):
        running = max(running, min(1.0, (m - i) * p))
        adjusted[name] = running
    return adjusted


def paired_verdict(result: Paired, adjusted_p: float, alpha: float = 0.05) -> str:
    """helps / hurts when Holm's adjusted p is at most ``alpha``, else no difference shown."""
    if adjusted_p > alpha:
        return "no difference shown"
    return "helps" if result.mean > 0 else "hurts"


def calibrated(reference_final: list[float], level: float) -> bool:
    """The precondition of scoring a cell: its reference method reached ``level`` (mean final
    accuracy); a cell that fails it is reported "reference did not train", never scored."""
    return bool(reference_final) and sum(reference_final) / len(reference_final) >= level


def _mean(values: list[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return sum(finite) / len(finite) if finite else float("nan")


def mismatch(scopes: dict[str, Any]) -> dict[str, Any]:
    """The scope mismatch of one run, over rounds >= 1 that had replies, scoped layers averaged:

    - ``spread``: the clients' sigma after local training, std over clients / mean
      (``client_sigma_std / client_sigma_mean``);
    - ``drop``: how much sigma falls when the clients' models are averaged,
      ``1 - sigma_global / client_sigma_mean``;
    - ``growth``: per scoped layer, the global model's sigma in the last round over round 0's.
    """
    growth = [sigma_ratio(scopes, j)[-1] for j in range(len(scopes["rounds"][0]["global"]))]
    spread, drop = [], []
    for rec in scopes["rounds"]:
        if rec["round"] < 1 or "client_sigma_mean" not in rec:
            continue
        for j, (m, s) in enumerate(zip(rec["client_sigma_mean"], rec["client_sigma_std"], strict=True)):
            if m > 0:
                spread.append(s / m)
                drop.append(1.0 - rec["global"][j][1] / m)
    return {"spread": _mean(spread), "drop": _mean(drop), "growth": growth}


def sigma_ratio(scopes: dict[str, Any], layer: int) -> list[float]:
    """One layer's global sigma in each round over round 0's (NaN where round 0's is 0)."""
    sig = [rec["global"][layer][1] for rec in scopes["rounds"]]
    return [s / sig[0] if sig[0] > 0 else float("nan") for s in sig]


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
