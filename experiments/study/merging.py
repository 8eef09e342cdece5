"""Merging studies: a preset with ``kind: merging`` runs ``experiments.connect`` instead of
federations. Each of its ``strategies`` is one setting of the merging tool (its overrides:
``wsa.lambda``, ``prox_mu``, ``wd``, ``baselines``, ...), run for every seed in every cell; one
run trains plain, WSA and the baselines from the same starts and batches, so every comparison
between them is paired by seed. The report (``report/merging.md``, ``merging.json``,
``tradeoff.png``): per cell, setting and variant, the endpoints' accuracy, the merged
(midpoint) accuracy, the accuracy barrier and the fused accuracy of the last stage; the
comparisons the preset names (``analysis.compare``: ``[challenger, reference]`` variant pairs,
paired by seed, t interval, Holm over the whole study); and the trade-off of merged against
endpoint accuracy, one curve per method over its strengths.
"""

from __future__ import annotations

import json
import time
from itertools import pairwise
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from experiments.study.preset import Cell, Job, StudyError
from experiments.study.rules import Paired, holm, paired, paired_verdict
from experiments.summary import mean_std

KIND = "merging"
MEASURES = ("endpoint", "merged", "barrier", "fused")


def is_merging(cfg: DictConfig) -> bool:
    return cfg.get("kind", "federated") == KIND


def jobs(cfg: DictConfig, out: Path, cell: Cell) -> dict[str, list[Job]]:
    """setting -> one run per seed of ``final.seeds``."""
    return {
        name: [
            Job(
                out / "merge" / cell.name / name / f"seed={seed}",
                (*cfg.common, *cell.overrides, *s.overrides, f"seed={seed}"),
            )
            for seed in cfg.final.seeds
        ]
        for name, s in cfg.strategies.items()
    }


def ended(job: Job) -> bool:
    """A merging run has ended when its results.json is written (a diverged one writes it too)."""
    return (job.out_dir / "results.json").is_file()


def compose_connect(job: Job) -> DictConfig:
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from experiments.launch.preflight import CONF_DIR  # also registers the connect defaults

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        try:
            return compose(config_name="connect", overrides=[*job.overrides, f"out_dir='{job.out_dir}'"])
        except (HydraException, OmegaConfBaseException) as e:
            raise StudyError(f"{job.out_dir}: {str(e).splitlines()[0]}") from None


def validate(cfg: DictConfig, out: Path, todo: list[Cell]) -> None:
    """Every run's overrides compose and pass the tool's checks before the first run starts."""
    from experiments.connect import settings
    from fedwsa.run.config import ConfigError

    for cell in todo:
        for js in jobs(cfg, out, cell).values():
            try:
                settings(compose_connect(js[0]))
            except ConfigError as e:
                raise StudyError(f"{js[0].out_dir}: {e}") from None


def run_one(job: Job) -> bool:
    """Run one merging run unless it has ended; a diverged model ends it too (results.json
    says so). Returns whether it has ended."""
    if ended(job):
        return True
    import torch

    from experiments.connect import connect
    from experiments.launch.processes import LaunchError

    torch.set_num_threads(1)  # one core per run: runs go side by side
    print(f"[study] run {job.out_dir}", flush=True)
    t0 = time.monotonic()
    try:
        connect(compose_connect(job))
    except LaunchError as e:
        print(f"[study] {e}", flush=True)
    except Exception as e:  # a bug in one run must not end the study
        print(f"[study] run raised {type(e).__name__}: {e}: {job.out_dir}", flush=True)
    print(f"[study] {'ended' if ended(job) else 'failed'} in {time.monotonic() - t0:.0f} s: {job.out_dir}")
    return ended(job)


def run_all(cfg: DictConfig, out: Path, todo: list[Cell], dry_run: bool, workers: int) -> None:
    validate(cfg, out, todo)
    todo_jobs = [j for c in todo for js in jobs(cfg, out, c).values() for j in js]
    if dry_run:
        for j in todo_jobs:
            print(f"[study] merge {j.out_dir}  ({'ended' if ended(j) else 'absent'})", flush=True)
        return
    left = [j for j in todo_jobs if not ended(j)]
    if workers == 1:
        for j in left:
            run_one(j)
        return
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(workers) as pool:  # a fresh process per worker
        for _ in pool.imap_unordered(run_one, left):
            pass


# --- the report ---------------------------------------------------------------------------------


def values(res: dict[str, Any], variant: str) -> dict[str, float] | None:
    """One variant of one run: endpoints' mean accuracy, the midpoint's (the merged model's),
    the accuracy barrier and the last stage's fused accuracy; None if it diverged."""
    r = res.get(variant)
    if r is None or r["diverged"]:
        return None
    path = r["path"]
    return {
        "endpoint": (path[0]["accuracy"] + path[-1]["accuracy"]) / 2,
        "merged": path[len(path) // 2]["accuracy"],
        "barrier": r["barrier_accuracy"],
        "fused": r["stages"][-1]["accuracy"][0],
    }


def label(res: dict[str, Any], variant: str) -> str:
    """The method a variant stands for (WSA's by its normalisation and target)."""
    if variant != "wsa":
        return variant
    w = res["config"]["wsa"]
    return f"wsa ({w.get('normalize', 'none')}, {w['target']})"


def strength(res: dict[str, Any], variant: str) -> float:
    c = res["config"]
    return {"wsa": c["wsa"]["lambda"], "prox": c["prox_mu"], "wd": c["wd"]}.get(variant, 0.0)


def collect(cfg: DictConfig, out: Path, cell: Cell) -> dict[str, dict[str, dict[str, Any]]]:
    """setting -> variant -> {"label", "strength", "by_seed": {seed: values}, "diverged": [seeds]}."""
    table: dict[str, dict[str, dict[str, Any]]] = {}
    for name, js in jobs(cfg, out, cell).items():
        for j in js:
            if not ended(j):
                continue
            res = json.loads((j.out_dir / "results.json").read_text())
            seed = j.out_dir.name.removeprefix("seed=")
            for variant in ("plain", "wsa", *res["config"].get("baselines", [])):
                e = table.setdefault(name, {}).setdefault(
                    variant, {"label": label(res, variant), "strength": strength(res, variant),
                              "by_seed": {}, "diverged": []},
                )  # fmt: skip
                v = values(res, variant)
                if v is None:
                    e["diverged"].append(seed)
                else:
                    e["by_seed"][seed] = v
    return table


def comparisons(
    cfg: DictConfig, tables: dict[str, dict[str, dict[str, dict[str, Any]]]]
) -> list[dict[str, Any]]:
    """The preset's ``analysis.compare`` pairs, on ``analysis.measure`` (default ``merged``),
    per cell and setting where both variants have every seed: paired, Holm over all of them."""
    a = cfg.get("analysis", {})
    measure, alpha = a.get("measure", "merged"), float(a.get("alpha", 0.05))
    n = len(cfg.final.seeds)
    rows: list[dict[str, Any]] = []
    results: dict[str, Paired] = {}
    for cell, table in tables.items():
        for setting, variants in table.items():
            for chal, ref in a.get("compare", []):
                c, r = variants.get(chal), variants.get(ref)
                if not c or not r or len(c["by_seed"]) < n or len(r["by_seed"]) < n:
                    continue
                key = f"{cell} | {setting} | {chal} - {ref}"
                results[key] = paired({s: v[measure] for s, v in c["by_seed"].items()},
                                      {s: v[measure] for s, v in r["by_seed"].items()}, alpha)  # fmt: skip
                rows.append(
                    {"key": key, "cell": cell, "setting": setting, "challenger": chal, "reference": ref}
                )
    decide(rows, results, alpha)
    for row in rows:
        row["measure"] = measure
    return rows


def decide(rows: list[dict[str, Any]], results: dict[str, Paired], alpha: float) -> None:
    """Holm over ``results`` (key -> paired comparison); each row whose ``key`` has one gets its
    mean, interval, p, adjusted p and verdict."""
    adjusted = holm({k: p.p for k, p in results.items()}, alpha) if results else {}
    for row in rows:
        if row["key"] in results:
            p = results[row["key"]]
            row.update(mean=p.mean, low=p.low, high=p.high, p=p.p, adjusted_p=adjusted[row["key"]],
                       verdict=paired_verdict(p, adjusted[row["key"]], alpha))  # fmt: skip


def at(points: list[tuple[float, float]], x: float) -> float | None:
    """The merged accuracy of a method's curve ``[(endpoint, merged), ...]`` at endpoint accuracy
    ``x``, interpolated linearly between the two points that bracket it; None outside the curve."""
    pts = sorted(points)
    for (x0, y0), (x1, y1) in pairwise(pts):
        if x0 <= x <= x1:
            return y0 if x1 == x0 else y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    return pts[0][1] if len(pts) == 1 and pts[0][0] == x else None


def matched(cfg: DictConfig, tables: dict[str, dict[str, dict[str, dict[str, Any]]]]) -> list[dict[str, Any]]:
    """The plan's comparison at matched endpoint accuracy (``analysis.matched``: ``drop``, the
    endpoint level below plain's, and ``compare``, pairs of method labels). Per cell and seed,
    each method's curve over its strengths (plain is every method's strength 0) is read at
    plain's endpoint accuracy minus ``drop``; the pairs are compared paired over the seeds where
    both curves reach it (at least 2), Holm over all of them."""
    m = cfg.get("analysis", {}).get("matched")
    if not m:
        return []
    drop, alpha = float(m.get("drop", 0.02)), float(cfg.get("analysis", {}).get("alpha", 0.05))
    rows, results = [], {}
    for cell, table in tables.items():
        curves: dict[str, dict[str, list[tuple[float, float]]]] = {}
        plain: dict[str, float] = {}
        for variants in table.values():
            for e in variants.values():
                for seed, v in e["by_seed"].items():
                    if e["label"] == "plain":
                        plain[seed] = v["endpoint"]
                    curves.setdefault(e["label"], {}).setdefault(seed, []).append(
                        (v["endpoint"], v["merged"])
                    )
        for lab in curves:
            for seed, pts in curves[lab].items():
                if lab != "plain" and seed in plain:
                    zero = curves.get("plain", {}).get(seed, [])[:1]  # plain: the strength-0 point
                    curves[lab][seed] = sorted(set(pts + zero))
        for a, b in m.get("compare", []):
            read = {lab: {s: at(pts, plain[s] - drop) for s, pts in curves.get(lab, {}).items() if s in plain}
                    for lab in (a, b)}  # fmt: skip
            both = {s for s in read[a] if read[a][s] is not None and read[b].get(s) is not None}
            key = f"{cell} | {a} - {b}"
            row = {"key": key, "cell": cell, "challenger": a, "reference": b, "seeds": len(both),
                   "not_reached": sorted(set(plain) - both), "drop": drop}  # fmt: skip
            if len(both) >= 2:
                results[key] = paired({s: read[a][s] for s in both}, {s: read[b][s] for s in both}, alpha)  # type: ignore[misc]
            rows.append(row)
    decide(rows, results, alpha)
    for row in rows:
        row.setdefault("verdict", "not compared (fewer than 2 seeds reach the level)")
    return rows


def _pm(vals: list[float]) -> str:
    if not vals:
        return ""
    m, s = mean_std(vals)
    return f"{100 * m:.2f} ± {100 * s:.2f}" if len(vals) > 1 else f"{100 * m:.2f}"


def report(cfg: DictConfig, out: Path, allcells: list[Cell]) -> Path:
    tables = {c.name: collect(cfg, out, c) for c in allcells}
    tables = {k: t for k, t in tables.items() if t}
    rows = comparisons(cfg, tables)
    level = matched(cfg, tables)
    folder = out / "report"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "merging.json").write_text(json.dumps({"cells": tables, "comparisons": rows, "matched": level},
                                                    indent=1))  # fmt: skip
    lines = [f"# Merging study: {cfg.get('title', '')}", "",
             f"Seeds {list(cfg.final.seeds)}; accuracy in %, mean ± sample std over the seeds that did not "
             "diverge. endpoint: the mean of the two endpoints; merged: the midpoint of the path "
             "between models 0 and 1; barrier: the accuracy barrier (pp); fused: the last stage's merge.", "",
             "| cell | setting | method | strength | seeds | endpoint | merged | barrier (pp) | fused |",
             "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for cell, table in tables.items():
        for setting, variants in table.items():
            for e in variants.values():
                vs = list(e["by_seed"].values())
                seeds = f"{len(vs)}" + (f" ({len(e['diverged'])} diverged)" if e["diverged"] else "")
                cols = [_pm([v[m] for v in vs]) for m in MEASURES]
                lines.append(f"| {cell} | {setting} | {e['label']} | {e['strength']:g} | {seeds} | "
                             + " | ".join(cols) + " |")  # fmt: skip
    if rows:
        m = rows[0]["measure"]
        head = f"## Paired comparisons ({m} accuracy, pp; 95 % t interval; Holm over {len(rows)})"
        lines += ["", head, "", "| cell | setting | comparison | mean | interval | adjusted p | verdict |",
                  "|---|---|---|---|---|---|---|"]  # fmt: skip
        for r in rows:
            lines.append(f"| {r['cell']} | {r['setting']} | {r['challenger']} - {r['reference']} | "
                         f"{100 * r['mean']:+.2f} | [{100 * r['low']:+.2f}, {100 * r['high']:+.2f}] | "
                         f"{r['adjusted_p']:.3g} | {r['verdict']} |")  # fmt: skip
    if level:
        head = (f"## At matched endpoint accuracy (plain's minus {100 * level[0]['drop']:g} pp; merged "
                "accuracy read off each method's curve; pp, 95 % t interval, Holm)")  # fmt: skip
        lines += ["", head, "", "| cell | comparison | seeds | mean | interval | adjusted p | verdict |",
                  "|---|---|---|---|---|---|---|"]  # fmt: skip
        for r in level:
            nums = (f"{100 * r['mean']:+.2f} | [{100 * r['low']:+.2f}, {100 * r['high']:+.2f}] | "
                    f"{r['adjusted_p']:.3g}") if "mean" in r else " |  | "  # fmt: skip
            lines.append(f"| {r['cell']} | {r['challenger']} - {r['reference']} | {r['seeds']} | {nums} | "
                         f"{r['verdict']} |")  # fmt: skip
    (folder / "merging.md").write_text("\n".join(lines) + "\n")
    if tables:
        from experiments.plots import plot_tradeoff

        plot_tradeoff(tables, folder / "tradeoff.png", cfg.get("title", ""))
    print(f"[study] report: {folder / 'merging.md'} ({len(tables)} of {len(allcells)} cells)", flush=True)
    return folder
