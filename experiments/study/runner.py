"""Running a study's runs one after another in this process, as ``experiments.run`` would run
each (on Flower's engine as the jobs of one multirun: one Ray, SuperLink and Flower run), and
choosing each cell's tuned values once its tuning runs have ended."""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from experiments.study.preset import Cell, Job, StudyError, final_jobs, tune_jobs
from experiments.study.rules import choose
from fedwsa.run.results import ENDED, RunFolder, atomic_write

if TYPE_CHECKING:
    from experiments.launch.sweep_session import SweepSession


def status(job: Job) -> str:
    """finished | failed | interrupted | running | absent, from the run's metrics.json."""
    return RunFolder(job.out_dir).status()


def rows(job: Job) -> list[dict[str, Any]]:
    return RunFolder(job.out_dir).rows()


def run_job(job: Job, session: SweepSession | None = None) -> str:
    """Run (or resume, or skip) one run in this process, as ``experiments.run`` would; the
    run's own errors are printed by it and end in its status, not in this study. A run on
    Flower's engine goes to ``session`` (the study's shared Ray, SuperLink and Flower run, as a
    multirun's jobs), or to a session of its own."""
    if (st := status(job)) in ENDED:
        return st
    from experiments.launch.inprocess import run_inprocess
    from experiments.launch.preflight import execute
    from experiments.launch.sweep_session import SweepSession

    print(f"[study] run {job.out_dir}", flush=True)
    t0 = time.monotonic()
    try:
        cfg = compose_run(job)
        if cfg.engine == "inprocess":
            execute(cfg, run_inprocess, "in this process (engine=inprocess)")
        else:  # as a multirun's jobs: one Ray, SuperLink and Flower run (unless sweep_ray=false)
            with contextlib.nullcontext(session) if session else SweepSession() as s:
                execute(cfg, s.simulate, "Flower Simulation Engine")
    except SystemExit as e:
        if e.code == 130:
            raise KeyboardInterrupt from None
        print(f"[study] run ended with exit code {e.code}: {job.out_dir}", flush=True)
    except Exception as e:  # a bug in a run must not end the study: recorded, and the study goes on
        print(f"[study] run raised {type(e).__name__}: {e}: {job.out_dir}", flush=True)
    st = status(job)
    print(f"[study] {st} in {time.monotonic() - t0:.0f} s: {job.out_dir}", flush=True)
    return st


def num_classes(job: Job) -> int:
    dataset = RunFolder(job.out_dir).config().get("dataset", {})
    return int(dataset.get("num_classes", 10)) if isinstance(dataset, dict) else 10


def tuning_candidates(jobs: list[tuple[float, Job]]) -> list[tuple[float, list[dict[str, Any]]]]:
    """(value, rows) per tuning run; a failed run keeps its rows and is marked diverged."""
    out = []
    for value, job in jobs:
        r = rows(job)
        if status(job) == "failed" or not r:
            r = [*r, {"round": -1, "test_accuracy": 0.0, "test_loss": float("nan")}]
        out.append((value, r))
    return out


def choose_cell(cfg: DictConfig, tjobs: dict[str, list[tuple[float, Job]]]) -> dict[str, float] | None:
    """The chosen value per tuned strategy, or None while a tuning run has not ended."""
    choice: dict[str, float] = {}
    for name, jobs in tjobs.items():
        if any(status(j) not in ENDED for _, j in jobs):
            return None
        last = int(cfg.get("tune", {}).get("last", 1))  # the plan's number of last rounds to rank by
        choice[name] = choose(tuning_candidates(jobs), num_classes(jobs[0][1]), last)
    return choice


def compose_run(job: Job) -> DictConfig:
    """The Hydra config ``experiments.run`` would build from these overrides; a bad key or
    value: one line and exit 2 (as ``experiments.run``), or StudyError."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException

    from experiments.launch.preflight import CONF_DIR, preflight_groups

    overrides = [*job.overrides, f"out_dir='{job.out_dir}'", "resume=true"]
    preflight_groups(overrides)
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        try:
            return compose(config_name="config", overrides=overrides)
        except (HydraException, OmegaConfBaseException) as e:
            raise StudyError(f"{job.out_dir}: {str(e).splitlines()[0]}") from None


def validate(cfg: DictConfig, out: Path, todo: list[Cell], workers: int = 1) -> None:
    """Every run's overrides compose and resolve before the first run starts (a typo in a
    preset fails now, not hours later); runs side by side (``workers`` > 1) must be in-process."""
    from experiments.launch.preflight import resolve
    from fedwsa.run.config import ConfigError

    for cell in todo:
        tjobs = tune_jobs(cfg, out, cell)
        first = {name: jobs[0][0] for name, jobs in tjobs.items()}
        jobs = [j for js in tjobs.values() for _, j in js]
        jobs += [js[0] for js in final_jobs(cfg, out, cell, first).values()]
        for job in jobs:
            try:
                composed = compose_run(job)
                resolve(composed)
            except ConfigError as e:
                raise StudyError(f"{job.out_dir}: {e}") from None
            if workers > 1 and composed.engine != "inprocess":
                raise StudyError(
                    f"--workers {workers} runs in-process runs side by side, but {job.out_dir} has "
                    f"engine={composed.engine} (Flower's engine runs its clients in parallel itself): "
                    "use --workers 1 or engine=inprocess"
                )


def store_choice(
    cfg: DictConfig, out: Path, cell: Cell, tjobs: dict[str, list[tuple[float, Job]]]
) -> dict[str, float]:
    """The cell's choice from its ended tuning runs, added to ``<out>/choice.json``."""
    choice = choose_cell(cfg, tjobs)
    if choice is None:
        raise StudyError(f"{cell.name}: a tuning run did not end; run the study again to resume it")
    choices_path = out / "choice.json"
    # read again: another study process may have added its cells meanwhile
    stored = json.loads(choices_path.read_text()) if choices_path.exists() else {}
    stored[cell.name] = choice
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(choices_path, json.dumps(stored, indent=1))
    print(f"[study] {cell.name}: chosen on validation {choice}", flush=True)
    return choice


def run_sequential(cfg: DictConfig, out: Path, todo: list[Cell], dry_run: bool) -> None:
    """Every cell's tuning runs, its choice, then its final runs, one run at a time; with
    ``dry_run``, only list them and their state."""
    from experiments.launch.sweep_session import SweepSession

    with SweepSession() as session:  # stopped when the study ends, also on Ctrl-C
        for cell in todo:
            tjobs = tune_jobs(cfg, out, cell)
            for _, job in (x for jobs in tjobs.values() for x in jobs):
                if dry_run:
                    print(f"[study] tune  {job.out_dir}  ({status(job)})", flush=True)
                else:
                    run_job(job, session)
            if dry_run:
                for job in (j for jobs in final_jobs(cfg, out, cell, {}).values() for j in jobs):
                    print(f"[study] final {job.out_dir}  ({status(job)})", flush=True)
                continue
            choice = store_choice(cfg, out, cell, tjobs)
            for job in (j for jobs in final_jobs(cfg, out, cell, choice).values() for j in jobs):
                run_job(job, session)
    if dry_run:
        print("[study] dry run: the tuned strategies' final runs follow from the tuning runs", flush=True)
