"""The robustness table of docs/RESULTS.md ("Hostile clients"), from a robustness study's folder:
per attack cell and method the final test accuracy (mean ± sample std over seeds), the plan's
reading (an attack *breaks* a method when its mean is more than 10 pp below the method's clean
cell; a method *holds* when it is within max(2 pooled seed stds, 2 pp) of it), and for FedWSA how
far the target scope drifted: per layer ``|log(sigma_target / sigma_target of the same method's
clean run, same seed)|`` in the last round, averaged over layers and seeds.

    python -m experiments.robustness multirun/study/robustness [--out table.md]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

from experiments.summary import mean_std
from fedwsa.run.results import RunFolder

CLEAN = "attack=none"


def final_accuracy(run: Path) -> float | None:
    folder = RunFolder(run)
    rows = folder.rows()
    return float(rows[-1]["test_accuracy"]) if rows and folder.ended() else None


def last_target(run: Path) -> list[float] | None:
    """Each layer's target sigma in the last round (FedWSA's runs; None for the others)."""
    scopes = RunFolder(run).scopes()
    if not scopes or not scopes["rounds"] or scopes["rounds"][-1].get("target") is None:
        return None
    return [float(s) for _, s in scopes["rounds"][-1]["target"]]


def drift(run: Path, clean: Path) -> float | None:
    a, b = last_target(run), last_target(clean)
    if a is None or b is None or not all(x > 0 and y > 0 for x, y in zip(a, b, strict=True)):
        return None if a is None or b is None else math.inf
    return sum(abs(math.log(x / y)) for x, y in zip(a, b, strict=True)) / len(a)


def reading(vals: list[float], clean: list[float]) -> str:
    """The plan's rule, on final accuracies (fractions)."""
    if not vals or not clean or vals is clean:
        return ""
    m, s = mean_std(vals)
    c, sc = mean_std(clean)
    if c - m > 0.10 + 1e-9:  # "more than 10 pp", not float rounding of exactly 10
        return "breaks"
    pooled = math.sqrt((s**2 + sc**2) / 2) if len(vals) > 1 and len(clean) > 1 else 0.0
    return "holds" if abs(m - c) <= max(2 * pooled, 0.02) else "between"


def table(folder: Path) -> tuple[list[str], dict[str, Any]]:
    final = folder / "final"
    cells = sorted((p.name for p in final.iterdir() if p.is_dir()), key=lambda n: (n != CLEAN, n))
    methods = sorted({m.name for c in cells for m in (final / c).iterdir() if m.is_dir()})
    data: dict[str, Any] = {}
    for c in cells:
        for m in methods:
            runs = sorted((final / c / m).glob("seed=*"))
            accs = [a for r in runs if (a := final_accuracy(r)) is not None]
            drifts = [d for r in runs if (d := drift(r, final / CLEAN / m / r.name)) is not None]
            data[f"{c}/{m}"] = {"accuracy": accs, "drift": drifts, "seeds": len(accs)}
    lines = ["| attack | " + " | ".join(methods) + " |", "|---|" + "---|" * len(methods)]
    for c in cells:
        cols = []
        for m in methods:
            e, clean = data[f"{c}/{m}"], data[f"{CLEAN}/{m}"]["accuracy"]
            if not e["accuracy"]:
                cols.append("not run")
                continue
            mu, sd = mean_std(e["accuracy"])
            text = (
                f"{100 * mu:.1f} ± {100 * sd:.1f}" if len(e["accuracy"]) > 1 else f"{100 * mu:.1f} (1 seed)"
            )
            r = reading(e["accuracy"], clean) if c != CLEAN else ""
            text += f" {r}" if r else ""
            if e["drift"] and c != CLEAN:
                d = sum(e["drift"]) / len(e["drift"])
                text += " (drift inf)" if math.isinf(d) else f" (drift {d:.3f})"
            cols.append(text)
        lines.append(f"| {c.removeprefix('attack=')} | " + " | ".join(cols) + " |")
    return lines, data


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.robustness", description=__doc__.splitlines()[0])
    p.add_argument("folder", type=Path, help="the study's folder (it holds final/attack=.../<method>/seed=N)")
    p.add_argument(
        "--out", type=Path, help="also write the table here (markdown) and its data beside it (.json)"
    )
    a = p.parse_args(argv)
    if not (a.folder / "final" / CLEAN).is_dir():
        print(
            f"error: {a.folder}: no final/{CLEAN} (the clean cell every reading compares with)",
            file=sys.stderr,
        )
        return 2
    lines, data = table(a.folder)
    text = "\n".join(lines) + "\n"
    print(text)
    if a.out:
        a.out.write_text(text)
        a.out.with_suffix(".json").write_text(json.dumps(data, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
