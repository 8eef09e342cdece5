"""Scoring a study's cells: per strategy its chosen value and per-seed results, and the
decisions of the preset's rule."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from experiments.study.preset import Cell, Job, final_jobs, fmt, tune_jobs
from experiments.study.rules import (
    Decision,
    calibrated,
    decide,
    diverged,
    holm,
    mismatch,
    paired,
    paired_verdict,
)
from experiments.study.runner import num_classes, rows, status
from experiments.summary import mean_std
from fedwsa.run.results import ENDED, RunFolder


def cell_results(cfg: DictConfig, out: Path, cell: Cell, choice: dict[str, float]) -> dict[str, Any]:
    """Per strategy: chosen value, per-seed final and best accuracy, mismatch; the decisions."""
    res: dict[str, Any] = {"cell": cell.key, "strategies": {}, "tuning": {}}
    for name, tjobs in tune_jobs(cfg, out, cell).items():
        res["tuning"][name] = {}
        for v, j in tjobs:
            st, r = status(j), rows(j)
            res["tuning"][name][fmt(v)] = {
                "status": st,
                "accuracy": float(r[-1]["test_accuracy"]) if r else None,
                "diverged": st == "failed" or (bool(r) and diverged(r, num_classes(j))),
            }
    last = int(cfg.final.get("last", 1))  # the plan's number of last rounds a final is scored by
    for name, jobs in final_jobs(cfg, out, cell, choice).items():
        res["strategies"][name] = {"value": choice.get(name), **final_entry(jobs, last)}
    res["decisions"] = decisions(cfg, res["strategies"])
    return res


def final_entry(jobs: list[Job], last: int = 1) -> dict[str, Any]:
    """The final runs of one strategy in one cell: per ended seed its final and best test
    accuracy, and the scope mismatch of the finished ones. ``last`` (``final.last`` of the
    preset): a final is scored by the mean test accuracy of its last ``last`` evaluated rounds
    (1: the last round's).

    A failed final (the runner stopped it: every reply rejected for ``max_failed_rounds``
    rounds) counts as a seed, scored by the last test accuracy evaluated before it stopped:
    the global model no longer changes once every reply is rejected, so that is the accuracy
    the federation ends with. (Deviation from wsa_where's plan, which was silent on failed
    finals; docs/RESULTS.md lists it.) A failed run with no evaluated round does not count."""
    states = [status(j) for j in jobs]
    scored = [(j, st, r) for j, st in zip(jobs, states, strict=True) if st in ENDED and (r := rows(j))]
    entry: dict[str, Any] = {
        "seeds": len(scored),
        "failed": states.count("failed"),
        "final": [_score(r, last) for _, _, r in scored],
        "by_seed": {j.out_dir.name.removeprefix("seed="): _score(r, last) for j, _, r in scored},
        "best": [max(float(row["test_accuracy"]) for row in r) for _, _, r in scored],
        "mismatch": [],
    }
    for j, st, _ in scored:
        scopes = RunFolder(j.out_dir).scopes()
        if st == "finished" and scopes is not None:  # a failed run's scopes hold NaN
            entry["mismatch"].append(mismatch(scopes))
    return entry


def _score(rows_: list[dict[str, Any]], last: int) -> float:
    """Mean test accuracy of the last ``last`` rounds (fewer if the run has fewer)."""
    tail = [float(r["test_accuracy"]) for r in rows_[-last:]]
    return sum(tail) / len(tail)


def decisions(cfg: DictConfig, st: dict[str, Any]) -> dict[str, Any]:
    """The decision rule: each challenger, and the better challenger, against the better
    reference (by mean final accuracy), once every seed of them has ended (``final_entry``)."""
    n = len(cfg.final.seeds)
    ready = {k: v for k, v in st.items() if v["seeds"] == n}
    refs = [r for r in cfg.get("references", []) if r in ready]
    chal = [c for c in cfg.get("challengers", []) if c in ready]
    if not refs or not chal or len(refs) < len(cfg.get("references", [])):
        return {}
    best_ref = max(refs, key=lambda r: mean_std(ready[r]["final"])[0])
    out: dict[str, Any] = {"reference": best_ref}

    def d(c: str) -> dict[str, Any]:
        x: Decision = decide(ready[c]["final"], ready[best_ref]["final"])
        return {"verdict": x.verdict, "diff": x.diff, "pooled_sd": x.pooled_sd}

    for c in chal:
        out[c] = d(c)
    if len(chal) == len(cfg.get("challengers", [])):
        best = max(chal, key=lambda c: mean_std(ready[c]["final"])[0])
        out["best_challenger"] = {"name": best, **d(best)}
    return out


def mechanism_points(cfg: DictConfig, results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per cell and challenger: its gain over the baseline (mean final accuracy) and the
    baseline's own mismatch (spread, drop; means over seeds)."""
    base = cfg.get("baseline", "fedavg")
    n = len(cfg.final.seeds)
    points = []
    for res in results:
        st = res["strategies"]
        if base not in st or st[base]["seeds"] < n or not st[base]["mismatch"]:
            continue
        spread = sum(m["spread"] for m in st[base]["mismatch"]) / len(st[base]["mismatch"])
        drop = sum(m["drop"] for m in st[base]["mismatch"]) / len(st[base]["mismatch"])
        for c in cfg.get("challengers", []):
            if c in st and st[c]["seeds"] == n:
                (mc, sc), (mb, sb) = mean_std(st[c]["final"]), mean_std(st[base]["final"])
                se = math.sqrt(
                    sc**2 / len(st[c]["final"]) + sb**2 / len(st[base]["final"])
                )  # of the difference
                points.append({"cell": res["cell"], "challenger": c, "gain": mc - mb, "gain_se": se,
                               "spread": spread, "drop": drop})  # fmt: skip
    return points


def paired_decisions(cfg: DictConfig, results: list[dict[str, Any]]) -> int:
    """The plan's paired analysis (``analysis: {paired: true, reference, alpha, calibration}``),
    written into each cell's ``paired``: every challenger against the reference on the same
    seeds (``fedwsa``'s seeds fix partition, initialisation and sampling), a t interval of the
    mean difference, and Holm's correction over every comparison of the study that is scored.
    A cell whose reference's mean final accuracy is below ``calibration`` is "reference did not
    train" and is not scored. Returns the number of comparisons Holm corrected over."""
    a = cfg.get("analysis", {})
    if not a.get("paired", False):
        return 0
    ref, alpha = a.get("reference", cfg.get("baseline", "fedavg")), float(a.get("alpha", 0.05))
    level, n = float(a.get("calibration", 0.0)), len(cfg.final.seeds)
    tests: dict[str, Any] = {}
    for i, res in enumerate(results):
        st = res["strategies"]
        chal = [c for c in cfg.get("challengers", []) if c in st and st[c]["seeds"] == n]
        if ref not in st or st[ref]["seeds"] < n or not chal:
            res["paired"] = {"reference": ref, "status": "not all final runs done"}
        elif not calibrated(st[ref]["final"], level):
            res["paired"] = {"reference": ref, "status": "reference did not train"}
        else:
            res["paired"] = {"reference": ref, "status": "scored"}
            for c in chal:
                tests[f"{i}/{c}"] = paired(st[c]["by_seed"], st[ref]["by_seed"], alpha)
    adjusted = holm({k: t.p for k, t in tests.items()})
    for key, t in tests.items():
        cell, c = key.split("/", 1)
        results[int(cell)]["paired"][c] = {
            "diffs": t.diffs, "mean": t.mean, "low": t.low, "high": t.high, "p": t.p, "p_holm": adjusted[key],
            "verdict": paired_verdict(t, adjusted[key], alpha),
        }  # fmt: skip
    return len(tests)
