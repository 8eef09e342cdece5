"""Summarise ``experiments.connect`` runs over seeds: barriers and fused accuracy, mean ± std.

python -m experiments.connect_report multirun/connect_fmnist [--out table.md]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from experiments.summary import mean_std

VARIANTS = {"plain": "without WSA", "wsa": "with WSA", "prox": "L2 pull to the start", "wd": "weight decay"}
METRICS = (
    ("barrier_loss", "loss barrier", 1.0),
    ("barrier_accuracy", "accuracy barrier (pp)", 100.0),
    ("endpoints", "endpoint accuracy (%)", 100.0),
    ("fused", "fused accuracy (%)", 100.0),
)


def _values(res: dict, variant: str) -> dict[str, float]:
    r = res[variant]
    ends = (r["path"][0]["accuracy"] + r["path"][-1]["accuracy"]) / 2
    return {"barrier_loss": r["barrier_loss"], "barrier_accuracy": r["barrier_accuracy"],
            "endpoints": ends, "fused": r["stages"][-1]["accuracy"][0]}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m experiments.connect_report", description=__doc__.splitlines()[0]
    )
    p.add_argument("paths", nargs="+", type=Path)
    p.add_argument("--out", type=Path)
    a = p.parse_args(argv)
    files = sorted(f for root in a.paths for f in root.rglob("results.json"))
    if not files:
        print(f"error: no results.json under {', '.join(map(str, a.paths))}", file=sys.stderr)
        return 2
    results = [json.loads(f.read_text()) for f in files]
    diverged = [
        f
        for f, r in zip(files, results, strict=True)
        if any(r[v].get("diverged") for v in VARIANTS if v in r)
    ]
    for f in diverged:
        print(f"[fedwsa] leaving out {f.parent}: a model diverged (no barrier)", file=sys.stderr)
    results = [r for f, r in zip(files, results, strict=True) if f not in diverged]
    if not results:
        print("error: every run diverged; nothing to summarise", file=sys.stderr)
        return 1
    lam = sorted({r["config"]["wsa"]["lambda"] for r in results})
    seeds = sorted(r["config"]["seed"] for r in results)
    present = [v for v in VARIANTS if all(v in r for r in results)]
    header = "| metric | " + " | ".join(VARIANTS[v] for v in present) + " |"
    lines = [
        f"{len(results)} runs (seeds {seeds}), wsa.lambda {lam}",
        "",
        header,
        "|---|" + "---|" * len(present),
    ]
    for key, name, scale in METRICS:
        cells = []
        for v in present:
            m, s = mean_std([scale * _values(r, v)[key] for r in results])
            cells.append(f"{m:.3f} ± {s:.3f}" if scale == 1.0 else f"{m:.2f} ± {s:.2f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n\nmean ± sample std over seeds; endpoint accuracy is the mean of A and B.\n"
    print(text)
    if a.out:
        a.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
