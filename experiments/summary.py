"""Read finished runs, check they are comparable, and summarise them over seeds.

Pure functions over what a run folder holds (read by ``fedwsa.run.results.RunFolder``);
the command line is ``experiments/report.py``, the figures ``experiments/plots.py``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from fedwsa.run.config import ExperimentConfig
from fedwsa.run.results import RunFolder
from strategies import registry

# Keys that may differ between the runs of one report: what a sweep varies (strategy and
# its knobs, alpha, seeds) and settings that do not change the experiment.
VARYING = ("strategy.", "partition.alpha", "seed", "seeds.", "out_dir", "verbose", "client_cpus",
           "node_wait_s", "round_timeout_s", "federation.", "eval_batch_size", "resume",
           "checkpoint_every", "max_failed_rounds", "update_clip", "tracking.")  # fmt: skip
SERVER_KNOBS = ("update_clip",)  # server-side options, labelled when they vary


class ReportError(ValueError):
    """Runs that cannot be reported together; one-line message."""


@dataclass
class Run:
    path: Path
    config: dict[str, Any]
    rows: list[dict[str, Any]]
    scopes: dict[str, Any] | None
    evaluated_on: str = "test"
    label: str = ""

    @property
    def alpha(self) -> float:
        return float(self.config["partition"]["alpha"])

    @property
    def accuracy(self) -> list[float]:
        return [float(r["test_accuracy"]) for r in self.rows]


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {prefix + k: v})
    return out


def find_runs(paths: list[Path]) -> tuple[list[Run], list[Path]]:
    """All finished runs under ``paths`` (searched recursively), and the unfinished ones."""
    runs, unfinished = [], []
    for root in paths:
        if not root.exists():
            raise ReportError(f"{root} does not exist")
        found = {
            *root.rglob("metrics.json"),
            *([root / "metrics.json"] if (root / "metrics.json").exists() else []),
        }
        for m in sorted(found):
            run = RunFolder(m.parent)
            record = run.record()
            if not record:
                continue
            if run.status() != "finished":
                unfinished.append(run.path)
                continue
            runs.append(
                Run(run.path, record["config"], run.rows(), run.scopes(), record.get("evaluated_on", "test"))
            )
    if not runs:
        raise ReportError(f"no finished runs under {', '.join(map(str, paths))}")
    return runs, unfinished


def check_comparable(runs: list[Run]) -> None:
    """Refuse runs whose non-swept settings differ (names the first such key). A key one run's
    config lacks (written before the key existed) counts as its default."""
    defaults = _flat(ExperimentConfig().as_dict())
    ref = _flat(runs[0].config)
    for run in runs[1:]:
        flat = _flat(run.config)
        for key in sorted(set(ref) | set(flat)):
            if key.startswith(VARYING) or key in VARYING:
                continue
            if ref.get(key, defaults.get(key)) != flat.get(key, defaults.get(key)):
                raise ReportError(
                    f"runs differ in {key} ({ref.get(key)!r} in {runs[0].path}, {flat.get(key)!r} in "
                    f"{run.path}); a report compares runs that differ only in strategy, alpha and seed"
                )


def _knob(r: Run, k: str, defaults: dict[str, Any]) -> Any:
    return r.config["strategy"].get(k, defaults.get(k))


def label_runs(runs: list[Run]) -> None:
    """Label = strategy name, its strength (the unit's ``strength``: FedProx's mu, FedWSA's
    lambda), and any of its knobs that varies between its runs."""
    for name in {r.config["strategy"]["name"] for r in runs}:
        same = [r for r in runs if r.config["strategy"]["name"] == name]
        # a registered algorithm's knobs, a missing one at its default (runs written before #32
        # also list other algorithms' knobs); a user's own: whatever its runs list
        defaults = registry.defaults(name) if name in registry.UNITS else {}
        listed = {k for r in same for k in r.config["strategy"]} - {"name"}
        knobs = sorted(defaults) if defaults else sorted(listed)
        value = partial(_knob, defaults=defaults)

        own = registry.strength(name)
        varying = [k for k in own if k in knobs] + [
            k for k in knobs if k not in own and len({str(value(r, k)) for r in same}) > 1
        ]
        server = [k for k in SERVER_KNOBS if len({str(r.config.get(k)) for r in runs}) > 1]
        for r in same:
            r.label = name + "".join(f", {k}={value(r, k)}" for k in varying)
            r.label += "".join(f", {k}={r.config.get(k)}" for k in server)


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (n - 1; 0 for a single value)."""
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    return mean, std


def rounds_to(acc: list[float], target: float) -> int | None:
    """First round whose accuracy reaches ``target`` (None if never)."""
    return next((i for i, a in enumerate(acc) if a >= target), None)


@dataclass
class Group:
    """The runs of one strategy label at one alpha (one per seed)."""

    label: str
    alpha: float
    runs: list[Run] = field(default_factory=list)

    def stats(self, target: float) -> dict[str, Any]:
        finals = [r.accuracy[-1] for r in self.runs]
        bests = [max(r.accuracy) for r in self.runs]
        reached = [t for t in (rounds_to(r.accuracy, target) for r in self.runs) if t is not None]
        walls = [float(r.rows[-1]["elapsed_s"] or 0.0) for r in self.runs]
        return {
            "strategy": self.label, "alpha": self.alpha, "seeds": len(self.runs),
            "final_mean": mean_std(finals)[0], "final_std": mean_std(finals)[1],
            "best_mean": mean_std(bests)[0], "best_std": mean_std(bests)[1],
            "rounds_to_target": mean_std([float(t) for t in reached])[0] if reached else None,
            "reached": len(reached), "wall_s": mean_std(walls)[0],
        }  # fmt: skip


def group_runs(runs: list[Run]) -> list[Group]:
    """Groups sorted by alpha, then label."""
    groups: dict[tuple[float, str], Group] = {}
    for r in runs:
        groups.setdefault((r.alpha, r.label), Group(r.label, r.alpha)).runs.append(r)
    return [groups[k] for k in sorted(groups)]


def summary(stats: list[dict[str, Any]], metric: str = "final") -> list[str]:
    """Per alpha: who won, by how much, and whether that exceeds the seed spread."""
    lines = []
    for alpha in sorted({s["alpha"] for s in stats}):
        rows = sorted((s for s in stats if s["alpha"] == alpha), key=lambda s: -s[f"{metric}_mean"])
        if len(rows) < 2:
            continue
        a, b = rows[0], rows[1]
        diff = 100 * (a[f"{metric}_mean"] - b[f"{metric}_mean"])
        spread = 100 * max(a[f"{metric}_std"], b[f"{metric}_std"])
        if min(a["seeds"], b["seeds"]) < 2:
            verdict = "a single seed, so no spread to compare with"
        elif diff > 2 * spread:
            verdict = f"more than twice the larger seed std ({spread:.2f} pp): a clear difference"
        elif diff > spread:
            verdict = f"between one and two seed stds ({spread:.2f} pp): suggestive, not conclusive"
        else:
            verdict = f"within one seed std ({spread:.2f} pp): not distinguishable from seed noise"
        lines.append(
            f"alpha={alpha:g}: {a['strategy']} leads ({100 * a[f'{metric}_mean']:.2f}%) ahead of "
            f"{b['strategy']} ({100 * b[f'{metric}_mean']:.2f}%) by {diff:.2f} pp, {verdict}."
        )
    return lines
