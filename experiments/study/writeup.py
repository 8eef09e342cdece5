"""A study's report: ``study.json``, ``study.md`` (tuning, finals, decisions, mechanism) and
``mechanism.png``, from the scored cells."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from experiments.study.preset import Cell, StudyError, fmt
from experiments.study.rules import spearman
from experiments.study.scoring import cell_results, mechanism_points, paired_decisions
from experiments.summary import mean_std


def _pm(values: list[float]) -> str:
    if not values:
        return "not run"
    m, s = mean_std(values)
    return f"{100 * m:.2f} ± {100 * s:.2f}" if len(values) > 1 else f"{100 * m:.2f}"


def report(cfg: DictConfig, out: Path, allcells: list[Cell], merge: Path | None = None) -> Path:
    """The report of every cell with its choices; ``merge``: an earlier report's study.json,
    whose cells this study's folder does not hold are reported as they were there."""
    choices = json.loads((out / "choice.json").read_text()) if (out / "choice.json").exists() else {}
    earlier = {}
    if merge is not None:
        try:
            earlier = {Cell(r["cell"], ()).name: r for r in json.loads(merge.read_text())}
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise StudyError(f"--merge {merge}: not a study.json of this tool ({e})") from None
    results = [
        cell_results(cfg, out, c, choices[c.name]) if c.name in choices else earlier[c.name]
        for c in allcells
        if c.name in choices or c.name in earlier
    ]
    merged = [r for r in results if Cell(r["cell"], ()).name not in choices]
    paired_decisions(cfg, results)  # the plan's paired analysis, Holm over the whole study
    folder = out / "report"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "study.json").write_text(json.dumps(results, indent=1))
    lines = write_markdown(cfg, results, allcells)
    if merged:
        lines[4:4] = [f"{len(merged)} of these cells are taken as they were from {merge} (their runs are not "
                      f"in {out}): {'; '.join(Cell(r['cell'], ()).name for r in merged)}.", ""]  # fmt: skip
    (folder / "study.md").write_text("\n".join(lines) + "\n")
    points = mechanism_points(cfg, results)
    if points:
        from experiments.plots import plot_mechanism

        plot_mechanism(points, folder / "mechanism.png", cfg.get("baseline", "fedavg"))
    print(f"[study] report: {folder / 'study.md'} ({len(results)} of {len(allcells)} cells)", flush=True)
    return folder


def _growth_table(results: list[dict[str, Any]], names: list[str], axes: list[str]) -> list[str]:
    """Per cell and strategy: each scoped layer's global sigma in the last round over round
    0's, mean over the finished seeds (layers in the order of ``scopes.json``)."""
    out: list[str] = []
    for res in results:
        for name in names:
            mm = (res["strategies"].get(name) or {}).get("mismatch") or []
            grows = [m["growth"] for m in mm if "growth" in m]
            if not grows:
                continue
            if not out:
                head = "## Each layer's sigma, last round over round 0 (global model, mean over seeds)"
                out = ["", head, "",
                       "| " + " | ".join(axes) + " | strategy | sigma ratio per layer, first to last |",
                       "|" + "---|" * (len(axes) + 2)]  # fmt: skip
            per_layer = [sum(g[i] for g in grows) / len(grows) for i in range(len(grows[0]))]
            ratios = " ".join(f"{r:.2f}" for r in per_layer)
            out.append("| " + " | ".join(res["cell"][a] for a in axes) + f" | {name} | {ratios} |")
    return out


def write_markdown(cfg: DictConfig, results: list[dict[str, Any]], allcells: list[Cell]) -> list[str]:
    names = list(cfg.strategies)
    axes = list(cfg.axes)
    last = int(cfg.final.get("last", 1))
    lines = [
        f"# Study: {cfg.get('title', '')}",
        "",
        f"{len(results)} of {len(allcells)} cells have their choices; final runs: "
        f"{cfg.final.rounds} rounds, seeds {list(cfg.final.seeds)}; accuracy in %, mean ± sample std.",
        "",
        "## Tuning (last tuning round's accuracy on the tuning split; * = chosen, † = diverged or failed)",
        "",
    ]
    on_validation = [o for o in cfg.final.get("overrides", []) if o.startswith("validation=")]
    split = "validation" if on_validation and float(on_validation[-1].split("=")[1]) > 0 else "test"
    tuned = [n for n in names if "tune" in cfg.strategies[n]]
    for name in tuned:
        s = cfg.strategies[name]
        vals = [fmt(float(v)) for v in s.tune["values"]]
        lines += [
            f"{name} ({s.tune.key}):",
            "",
            "| " + " | ".join(axes) + " | " + " | ".join(vals) + " |",
            "|" + "---|" * (len(axes) + len(vals)),
        ]
        for res in results:
            t, chosen = res["tuning"].get(name, {}), res["strategies"].get(name, {}).get("value")
            row = []
            for v in vals:
                e = t.get(v, {})
                acc = "" if e.get("accuracy") is None else f"{100 * e['accuracy']:.2f}"
                mark = ("†" if e.get("diverged") else "") + (
                    "*" if chosen is not None and fmt(chosen) == v else ""
                )
                row.append(acc + mark)
            lines.append("| " + " | ".join(res["cell"][a] for a in axes) + " | " + " | ".join(row) + " |")
        lines.append("")
    lines += [
        f"## Final runs ({split} split)",
        "",
        "A failed run (stopped by the runner) counts as a seed, scored by its last evaluated accuracy."
        + (f" final acc: the mean test accuracy of each run's last {last} rounds." if last > 1 else ""),
        "",
        "| "
        + " | ".join(axes)
        + " | strategy | value | seeds | final acc | best acc"
        + " | spread of client sigma (%) | sigma drop on averaging (%) |",
        "|" + "---|" * (len(axes) + 7),
    ]
    for res in results:
        for name in names:
            e = res["strategies"].get(name)
            if e is None:
                continue
            mm = e["mismatch"]
            spread = f"{100 * sum(m['spread'] for m in mm) / len(mm):.2f}" if mm else ""
            drop = f"{100 * sum(m['drop'] for m in mm) / len(mm):.2f}" if mm else ""
            seeds = f"{e['seeds']}" + (f" ({e['failed']} failed)" if e["failed"] else "")
            value = "" if e["value"] is None else fmt(e["value"])
            lines.append(
                "| "
                + " | ".join(res["cell"][a] for a in axes)
                + f" | {name} | {value} | {seeds} | {_pm(e['final'])} | {_pm(e['best'])}"
                + f" | {spread} | {drop} |"
            )
    lines += _growth_table(results, names, axes)
    lines += [
        "",
        "## Decisions (final accuracy; challenger minus the better reference, in pp; "
        "rule: more than 2 pooled sample stds)",
        "",
        "| "
        + " | ".join(axes)
        + " | reference | "
        + " | ".join(cfg.get("challengers", []))
        + " | better challenger |",
        "|" + "---|" * (len(axes) + 2 + len(cfg.get("challengers", []))),
    ]
    for res in results:
        d = res["decisions"]
        if not d:
            lines.append(
                "| "
                + " | ".join(res["cell"][a] for a in axes)
                + " | not all final runs done |"
                + " |" * (len(cfg.get("challengers", [])) + 1)
            )
            continue

        def cellfmt(x: dict[str, Any] | None) -> str:
            if not x:
                return ""
            return f"{x['verdict']} ({100 * x['diff']:+.2f} pp, s {100 * x['pooled_sd']:.2f})"

        best = d.get("best_challenger")
        lines.append(
            "| "
            + " | ".join(res["cell"][a] for a in axes)
            + f" | {d['reference']} | "
            + " | ".join(cellfmt(d.get(c)) for c in cfg.get("challengers", []))
            + f" | {best['name'] + ': ' + cellfmt(best) if best else ''} |"
        )
    lines += paired_lines(cfg, results)
    points = mechanism_points(cfg, results)
    if points:
        lines += ["", f"## Mechanism: gain over {cfg.get('baseline', 'fedavg')} vs its scope mismatch", ""]
        for c in cfg.get("challengers", []):
            p = [x for x in points if x["challenger"] == c]
            for what in ("spread", "drop"):
                rho = spearman([x[what] for x in p], [x["gain"] for x in p])
                rho_s = "n/a (fewer than 3 cells)" if math.isnan(rho) else f"{rho:+.2f}"
                lines.append(f"- {c}: Spearman's rho(gain, {what}) = {rho_s}, n = {len(p)} cells")
    return lines


def paired_lines(cfg: DictConfig, results: list[dict[str, Any]]) -> list[str]:
    """The paired decisions' table (``scoring.paired_decisions``), if the plan asks for them."""
    if not any("paired" in r for r in results):
        return []
    a, axes, chal = cfg.get("analysis", {}), list(cfg.axes), list(cfg.get("challengers", []))
    m = sum(1 for r in results for c in chal if c in r.get("paired", {}))
    level = float(a.get("calibration", 0.0))
    lines = ["", f"## Paired decisions (challenger minus reference per seed; mean, t-based "
             f"{100 * (1 - float(a.get('alpha', 0.05))):g} % interval, Holm over {m} comparisons; "
             f"a cell is scored only if its reference reaches {100 * level:g} %)", "",
             "| " + " | ".join(axes) + " | reference | " + " | ".join(chal) + " |",
             "|" + "---|" * (len(axes) + 1 + len(chal))]  # fmt: skip
    for res in results:
        p = res.get("paired", {})
        cells = [res["cell"][x] for x in axes]
        if p.get("status") != "scored":
            lines.append("| " + " | ".join(cells) + f" | {p.get('reference', '')}: {p.get('status', '')} |"
                         + " |" * len(chal))  # fmt: skip
            continue
        shown = [
            f"{x['verdict']} ({100 * x['mean']:+.2f} pp [{100 * x['low']:+.2f}, {100 * x['high']:+.2f}], "
            f"p_Holm {x['p_holm']:.3g})" if (x := p.get(c)) else ""
            for c in chal
        ]  # fmt: skip
        lines.append("| " + " | ".join(cells) + f" | {p['reference']} | " + " | ".join(shown) + " |")
    return lines
