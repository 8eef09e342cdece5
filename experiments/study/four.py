"""Phase 2 of a merging study (docs/RESULTS.md, "Model merging"): the four-model pairwise fusion
at each method's best setting per cell, chosen from phase 1 by the plan's rule, written as one
preset per cell (``experiments/conf/study/<name>_four_<cell>.yaml``).

    python -m experiments.study.four merging          # after: python -m experiments.study merging

The rule (fixed before phase 1's results were read): per cell and method, the strength with the
highest mean merged accuracy among those whose mean endpoint accuracy is at least plain's minus
``analysis.matched.drop``; if none is, the weakest strength.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from experiments.study.merging import collect
from experiments.study.preset import PRESET_DIR, StudyError, cells, load_preset

MAIN = "wsa (per_weight, init)"
KNOB = {MAIN: "wsa.lambda", "prox": "prox_mu", "wd": "wd"}


def best(table: dict[str, dict[str, dict[str, Any]]], drop: float) -> dict[str, float]:
    """label -> the chosen strength (every method but plain), by the rule above."""
    points: dict[str, list[tuple[float, float, float]]] = {}  # label -> (strength, endpoint, merged)
    plain: list[float] = []
    for variants in table.values():
        for e in variants.values():
            vs = list(e["by_seed"].values())
            if not vs:
                continue
            end, merged = (sum(v[k] for v in vs) / len(vs) for k in ("endpoint", "merged"))
            if e["label"] == "plain":
                plain.append(end)
            else:
                points.setdefault(e["label"], []).append((e["strength"], end, merged))
    if not plain:
        raise StudyError("no plain run has ended: run phase 1 first")
    level = plain[0] - drop
    chosen = {}
    for lab, pts in points.items():
        ok = [p for p in pts if p[1] >= level]
        chosen[lab] = max(ok, key=lambda p: (p[2], -p[0]))[0] if ok else min(p[0] for p in pts)
    return chosen


def stem(name: str, cell: Any) -> str:
    """The phase-2 preset's name for a cell: ``merging_four_init-same_split-halves``."""
    return f"{name}_four_{cell.name.replace(',', '_').replace('=', '-')}"


def preset_text(name: str, cfg: Any, cell: Any, chosen: dict[str, float]) -> str:
    common = [o for o in cfg.common if not o.startswith(("num_models=", "stages="))]
    over = [*common, *cell.overrides, "num_models=4", "stages=pairwise"]
    quoted = ", ".join(f"'{o}'" for o in over)
    main = ["wsa.normalize=per_weight", f"wsa.lambda={chosen.get(MAIN, 0):g}", "'baselines=[prox,wd]'",
            f"prox_mu={chosen.get('prox', 0):g}", f"wd={chosen.get('wd', 0):g}"]  # fmt: skip
    lines = [
        f'# Phase 2 of {name} (docs/RESULTS.md, "Model merging"), cell {cell.name}: four models,',
        f"# pairwise fusion, each method at its best setting of phase 1 (experiments.study.four {name}).",
        f"#   python -m experiments.study {stem(name, cell)} --workers 2",
        "kind: merging",
        f"title: four-model pairwise fusion, {cell.name}",
        f"out: multirun/study/{name}_four/{cell.name}",
        f"common: [{quoted}]",
        "axes: {cell: {" + f'"{cell.name}"' + ": []}}",
        f"final: {{seeds: {list(cfg.final.seeds)}}}",
        "analysis: {alpha: 0.05, measure: fused, compare: [[wsa, plain], [wsa, prox], [wsa, wd]]}",
        "strategies:",
        f"  main: {{overrides: [{', '.join(main)}]}}",
    ]
    for lab, key in (("wsa (none, init)", "none"), ("wsa (per_weight, fused)", "fused")):
        if lab in chosen:
            extra = "wsa.normalize=none" if key == "none" else "wsa.normalize=per_weight, wsa.target=fused"
            lines.append(f"  {key}: {{overrides: [{extra}, wsa.lambda={chosen[lab]:g}]}}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.study.four", description=__doc__.splitlines()[0])
    p.add_argument("preset", help="the phase-1 merging preset (name or .yaml)")
    p.add_argument("--out", type=Path, help="phase 1's folder (default: the preset's out)")
    p.add_argument(
        "--into", type=Path, default=PRESET_DIR, help="where the presets go (default: the presets')"
    )
    a = p.parse_args(argv)
    try:
        cfg = load_preset(a.preset, [])
        out = (a.out or Path(cfg.get("out"))).resolve()
        name = Path(a.preset).stem
        drop = float(cfg.get("analysis", {}).get("matched", {}).get("drop", 0.02))
        for cell in cells(cfg, []):
            chosen = best(collect(cfg, out, cell), drop)
            path = a.into / f"{stem(name, cell)}.yaml"
            path.write_text(preset_text(name, cfg, cell, chosen))
            print(f"[study] {cell.name}: {chosen} -> {path}", flush=True)
    except StudyError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
