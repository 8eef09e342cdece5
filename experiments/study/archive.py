"""Keeping a study's ended runs: ``--export`` copies their results (no models, no checkpoints:
small enough to commit), ``--restore`` puts them back so that the study skips them."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from experiments.study.preset import StudyError
from fedwsa.run.results import RunFolder, atomic_write

# what a run keeps: not model.pt, not checkpoints; results.json and path.csv: a merging study's
# runs (experiments.connect)
KEPT = ("metrics.json", "scopes.json", "config.json", "metrics.csv", "results.json", "path.csv")


def copy_ended(src: Path, dest: Path, skip: Path | None = None) -> int:
    """Copy the results (:data:`KEPT`) of every ended run under ``src`` to the same place
    under ``dest``, unless the run there has ended too (or lies under ``skip``); an unfinished
    run there is replaced. Then the choices: ``dest``'s own win over ``src``'s."""
    n = 0
    for found in sorted([*src.rglob("metrics.json"), *src.rglob("results.json")]):
        run, target = found.parent, dest / found.parent.relative_to(src)
        if ".copy" in run.name:  # a copy left half-made by a process that was killed
            continue
        if (skip and run.is_relative_to(skip)) or not _ended(run):
            continue
        if _ended(target):
            continue
        # copied aside, then renamed into place: two studies restoring the same folder at
        # once (one process per cell) each leave a whole copy, never half of one
        tmp = target.with_name(f"{target.name}.copy{os.getpid()}")
        tmp.mkdir(parents=True, exist_ok=True)
        for name in KEPT:
            if (run / name).exists():
                shutil.copy2(run / name, tmp / name)
        shutil.rmtree(target, ignore_errors=True)
        try:
            tmp.rename(target)
        except OSError:  # another process put its copy there first
            shutil.rmtree(tmp)
        n += 1
    if (src / "choice.json").exists():
        dest.mkdir(parents=True, exist_ok=True)
        mine = json.loads((dest / "choice.json").read_text()) if (dest / "choice.json").exists() else {}
        merged = {**json.loads((src / "choice.json").read_text()), **mine}
        atomic_write(dest / "choice.json", json.dumps(merged, indent=1))
    return n


def _ended(run: Path) -> bool:
    """A federated run whose metrics.json says it ended, or a merging run with its results."""
    return (run / "results.json").is_file() or RunFolder(run).ended()


def export(out: Path, dest: Path) -> int:
    """Copy the results of every run in ``out`` that has ended (finished or failed), without
    its model and checkpoints (small enough to commit), and the choices, to ``dest`` (same
    layout; added to what is there). Returns the number of runs copied."""
    return copy_ended(out, dest, skip=dest)


def restore(kept: Path, out: Path) -> int:
    """The reverse of :func:`export`: every ended run of ``kept`` that has not ended in ``out``
    is copied there, so the study skips it; the choices are added. Returns the runs copied."""
    if not kept.is_dir():
        raise StudyError(f"--restore {kept}: no such folder")
    return copy_ended(kept, out)
