"""``python -m experiments.study``: the command line (see the package's docstring)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from omegaconf import DictConfig

from experiments import study
from experiments.study import merging
from experiments.study.archive import export, restore
from experiments.study.merging import is_merging
from experiments.study.pool import run_side_by_side
from experiments.study.preset import Cell, StudyError, cells, load_preset
from experiments.study.runner import run_sequential, validate
from experiments.study.writeup import report


def run_study(cfg: DictConfig, out: Path, todo: list[Cell], dry_run: bool, workers: int = 1) -> None:
    """Check every run's config, then run the study: one run at a time, or ``workers`` side by side."""
    validate(cfg, out, todo, workers)
    if workers > 1 and not dry_run:
        run_side_by_side(cfg, out, todo, workers)
    else:
        run_sequential(cfg, out, todo, dry_run)


def main(argv: list[str] | None = None) -> int:
    about = (study.__doc__ or "").splitlines()[0]
    p = argparse.ArgumentParser(prog="python -m experiments.study", description=about)
    p.add_argument("preset", help="a preset under experiments/conf/study/ (name) or a .yaml file")
    p.add_argument("overrides", nargs="*", help="changes to the preset, as key=value (OmegaConf dotlist)")
    p.add_argument("--out", type=Path, help="the study's folder (default: the preset's out)")
    p.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="AXIS=VALUE",
        help="run only the cells with this value (repeatable; values of one axis add up)",
    )
    p.add_argument("--report", action="store_true", help="only write the report from what has finished")
    p.add_argument("--dry-run", action="store_true", help="list the tuning runs and their state; run nothing")
    p.add_argument(
        "--export",
        type=Path,
        metavar="DIR",
        help="only copy the ended runs' results (no models, no checkpoints) and the choices to DIR",
    )
    p.add_argument(
        "--restore",
        type=Path,
        metavar="DIR",
        help="first copy the ended runs of an --export folder into the study's folder (they are skipped)",
    )
    p.add_argument(
        "--merge",
        type=Path,
        metavar="STUDY_JSON",
        help="report also the cells of an earlier report's study.json that the study's folder lacks",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="run N in-process runs side by side in N processes (default 1: one after another)",
    )
    a = p.parse_args(argv)
    if a.workers < 1:
        print(f"error: --workers {a.workers}: give 1 or more", file=sys.stderr)
        return 2
    try:
        cfg = load_preset(a.preset, a.overrides)
        out = (a.out or Path(cfg.get("out", f"multirun/study/{Path(a.preset).stem}"))).resolve()
        todo = cells(cfg, a.only)
        if a.export:
            n = export(out, a.export.resolve())
            print(f"[study] {n} ended runs newly copied to {a.export}", flush=True)
            return 0
        if a.restore:
            n = restore(a.restore.resolve(), out)
            print(f"[study] {n} ended runs restored from {a.restore}", flush=True)
        if is_merging(cfg):  # each run an experiments.connect
            if not a.report:
                merging.run_all(cfg, out, todo, a.dry_run, a.workers)
            if not a.dry_run:
                merging.report(cfg, out, cells(cfg, []))
            return 0
        if not a.report:
            run_study(cfg, out, todo, a.dry_run, a.workers)
        if not a.dry_run:
            report(cfg, out, cells(cfg, []), a.merge)
    except StudyError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted; run the same command again to resume the study", file=sys.stderr)
        return 130
    return 0
