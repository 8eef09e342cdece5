"""Run a whole study from a preset: tune on validation, choose by code, run the finals, report.

    python -m experiments.study compare_fmnist               # the Fashion-MNIST comparison
    python -m experiments.study wsa_where --only model=cnn   # a subset of the cells
    python -m experiments.study wsa_where --report           # report what has finished
    python -m experiments.study wsa_where --dry-run          # list the runs, run nothing
    python -m experiments.study my_study.yaml tune.rounds=3  # a preset file, and overrides
    python -m experiments.study wsa_where --export DIR       # ended runs' results, to keep in git
    python -m experiments.study wsa_where --restore DIR      # continue from them on a new machine
    python -m experiments.study wsa_where --report --merge OLD/study.json   # with an earlier report's cells

A preset (``experiments/conf/study/<name>.yaml``) names the settings every run shares
(``common``), the cells (the product of ``axes``; each value a list of overrides), the
strategies (each a list of overrides, and optionally a knob to ``tune`` with its grid),
the tuning runs (``tune``: rounds, seed, overrides such as ``validation=0.1``), the final
runs (``final``: rounds, seeds) and, for the decision rule, which strategies are the
``challengers`` and which the ``references``.

Per cell, in order: every tuning run (the test split is never looked at when the tune
overrides set ``validation``), the choice (``fedwsa.run.study.choose``: highest accuracy
at the last tuning round, ties to the smaller value, diverged or failed runs last), the
final runs with the chosen values, seeds as listed. Runs on Flower's Simulation Engine share
one Ray, one SuperLink and one Flower run, as the jobs of a multirun do (``sweep_ray``;
stopped when the study ends). Every run goes to its own folder under ``--out``; a finished
run is skipped, an unfinished one resumes from its checkpoint, so an interrupted study
continues where it stopped. A run that fails (diverged: every reply rejected for
``max_failed_rounds`` rounds) is recorded as failed and the study goes on; a failed final
is scored by the last accuracy evaluated before it stopped (``final_entry``).
The report (``<out>/report/``: study.md, study.json, mechanism.png) is written at the end,
and by ``--report`` from whatever has finished.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from fedwsa.run.report import mean_std
from fedwsa.run.results import atomic_write
from fedwsa.run.study import Decision, choose, decide, diverged, mismatch, spearman

PRESET_DIR = Path(__file__).resolve().parent / "conf" / "study"


class StudyError(ValueError):
    """A preset that cannot be run; one-line message."""


@dataclass(frozen=True)
class Cell:
    key: dict[str, str]  # axis -> value name
    overrides: tuple[str, ...]

    @property
    def name(self) -> str:
        return ",".join(f"{a}={v}" for a, v in self.key.items())


@dataclass(frozen=True)
class Job:
    """One run: its folder and the overrides of ``experiments.run`` that make it."""

    out_dir: Path
    overrides: tuple[str, ...]


def _fmt(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


# --- the preset --------------------------------------------------------------------------
def load_preset(name: str, overrides: list[str]) -> DictConfig:
    path = Path(name) if name.endswith((".yaml", ".yml")) else PRESET_DIR / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in PRESET_DIR.glob("*.yaml")))
        raise StudyError(f"no study preset {name!r} (a .yaml file, or one of: {known})")
    try:
        cfg = OmegaConf.merge(OmegaConf.load(path), OmegaConf.from_dotlist(overrides))
    except (OmegaConfBaseException, ValueError) as e:
        raise StudyError(f"{path}: {str(e).splitlines()[0]}") from None
    if not isinstance(cfg, DictConfig):
        raise StudyError(f"{path}: a preset is a mapping of keys (common, axes, strategies, final, ...)")
    for key in ("common", "axes", "strategies", "final"):
        if key not in cfg:
            raise StudyError(f"{path}: the preset has no {key!r}")
    for name_, s in cfg.strategies.items():
        if "tune" in s and ("key" not in s.tune or not s.tune["values"]):
            raise StudyError(f"{path}: strategies.{name_}.tune needs a key and a non-empty list of values")
    for role in ("challengers", "references"):
        for s in cfg.get(role, []):
            if s not in cfg.strategies:
                raise StudyError(f"{path}: {role} names {s!r}, which is not under strategies")
    return cfg


def cells(cfg: DictConfig, only: list[str]) -> list[Cell]:
    """The product of the axes, in the preset's order, less what ``only`` (axis=value) leaves out."""
    wanted: dict[str, set[str]] = {}
    for o in only:
        axis, _, value = o.partition("=")
        if axis not in cfg.axes:
            raise StudyError(f"--only {o}: no axis {axis!r} (axes: {', '.join(cfg.axes)})")
        if value not in cfg.axes[axis]:
            raise StudyError(f"--only {o}: axis {axis} has no value {value!r} ({', '.join(cfg.axes[axis])})")
        wanted.setdefault(axis, set()).add(value)
    out = []
    names = list(cfg.axes)
    for combo in itertools.product(*(list(cfg.axes[a]) for a in names)):
        key = dict(zip(names, map(str, combo), strict=True))
        if all(key[a] in vs for a, vs in wanted.items()):
            ov = tuple(o for a in names for o in cfg.axes[a][key[a]])
            out.append(Cell(key, ov))
    if not out:
        raise StudyError("--only leaves no cell to run")
    return out


def tune_jobs(cfg: DictConfig, out: Path, cell: Cell) -> dict[str, list[tuple[float, Job]]]:
    """strategy -> [(value, job)] for every strategy with a knob to tune."""
    jobs: dict[str, list[tuple[float, Job]]] = {}
    t = cfg.get("tune", {})
    for name, s in cfg.strategies.items():
        if "tune" not in s:
            continue
        for v in s.tune["values"]:
            value = float(v)
            ov = (
                *cfg.common,
                *cell.overrides,
                *s.overrides,
                *t.get("overrides", []),
                f"num_rounds={t.get('rounds', 5)}",
                f"seed={t.get('seed', 0)}",
                f"{s.tune.key}={_fmt(value)}",
            )
            folder = out / "tune" / cell.name / name / f"{s.tune.key.split('.')[-1]}={_fmt(value)}"
            jobs.setdefault(name, []).append((value, Job(folder, ov)))
    return jobs


def final_jobs(cfg: DictConfig, out: Path, cell: Cell, choice: dict[str, float]) -> dict[str, list[Job]]:
    jobs: dict[str, list[Job]] = {}
    for name, s in cfg.strategies.items():
        knob: tuple[str, ...] = ()
        tag = name
        if "tune" in s:
            if name not in choice:
                continue  # not chosen yet (dry run)
            knob = (f"{s.tune.key}={_fmt(choice[name])}",)
            tag = f"{name},{s.tune.key.split('.')[-1]}={_fmt(choice[name])}"
        for seed in cfg.final.seeds:
            ov = (
                *cfg.common,
                *cell.overrides,
                *s.overrides,
                *cfg.final.get("overrides", []),
                f"num_rounds={cfg.final.rounds}",
                f"seed={seed}",
                *knob,
            )
            jobs.setdefault(name, []).append(Job(out / "final" / cell.name / tag / f"seed={seed}", ov))
    return jobs


# --- running -----------------------------------------------------------------------------
ENDED = ("finished", "failed")  # the statuses of a run that will not run again


def status(job: Job) -> str:
    """finished | failed | stopped | running | absent, from the run's metrics.json."""
    try:
        return str(json.loads((job.out_dir / "metrics.json").read_text()).get("status", "absent"))
    except (OSError, ValueError):
        return "absent"


def rows(job: Job) -> list[dict[str, Any]]:
    try:
        return list(json.loads((job.out_dir / "metrics.json").read_text())["rounds"])
    except (OSError, ValueError, KeyError):
        return []


def run_job(job: Job) -> str:
    """Run (or resume, or skip) one run in this process, as ``experiments.run`` would; the
    run's own errors are printed by it and end in its status, not in this study."""
    if status(job) in ENDED:
        return status(job)
    from experiments.launch.flower import simulate_in_sweep
    from experiments.launch.inprocess import run_inprocess
    from experiments.launch.preflight import execute

    print(f"[study] run {job.out_dir}", flush=True)
    t0 = time.monotonic()
    try:
        cfg = compose_run(job)
        if cfg.engine == "inprocess":
            execute(cfg, run_inprocess, "in this process (engine=inprocess)")
        else:  # as a multirun's jobs: one Ray, SuperLink and Flower run (unless sweep_ray=false)
            execute(cfg, simulate_in_sweep, "Flower Simulation Engine")
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
    try:
        cfg = json.loads((job.out_dir / "config.json").read_text())["config"]
        return int(cfg["dataset"].get("num_classes", 10))
    except (OSError, ValueError, KeyError):
        return 10


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
        choice[name] = choose(tuning_candidates(jobs), num_classes(jobs[0][1]))
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


def run_study(cfg: DictConfig, out: Path, todo: list[Cell], dry_run: bool, workers: int = 1) -> None:
    validate(cfg, out, todo, workers)
    if workers > 1 and not dry_run:
        return run_side_by_side(cfg, out, todo, workers)
    for cell in todo:
        tjobs = tune_jobs(cfg, out, cell)
        for _, job in (x for jobs in tjobs.values() for x in jobs):
            print(f"[study] tune  {job.out_dir}  ({status(job)})", flush=True) if dry_run else run_job(job)
        if dry_run:
            for job in (j for jobs in final_jobs(cfg, out, cell, {}).values() for j in jobs):
                print(f"[study] final {job.out_dir}  ({status(job)})", flush=True)
            continue
        choice = store_choice(cfg, out, cell, tjobs)
        for job in (j for jobs in final_jobs(cfg, out, cell, choice).values() for j in jobs):
            run_job(job)
    if dry_run:
        print("[study] dry run: the tuned strategies' final runs follow from the tuning runs", flush=True)


def run_side_by_side(cfg: DictConfig, out: Path, todo: list[Cell], workers: int) -> None:
    """The same runs as the sequential study, ``workers`` at a time in as many processes (an
    in-process run trains its clients one after another, on ``client_threads`` cores): every
    cell's tuning runs first, in the study's order; a cell's finals as soon as its tuning has
    ended. Each run is seeded by its own config, so it ends as it would in the sequential
    study (tests/test_study.py).
    Ctrl-C or SIGTERM stops every worker's run as it would stop a run alone (resumable).

    Written here rather than with ``concurrent.futures``: its pool cannot stop the runs in
    its workers, and a worker goes on to the next queued run after an interrupt."""
    import multiprocessing
    import queue
    import signal

    from experiments.launch.processes import on_interrupt

    ctx = multiprocessing.get_context("spawn")
    jobs: Any = ctx.Queue()
    ended: Any = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(jobs, ended)) for _ in range(workers)]
    tuning = {cell.name: tune_jobs(cfg, out, cell) for cell in todo}
    cell_of: dict[Path, Cell] = {}  # a tuning run's folder -> its cell
    left: dict[str, int] = {}
    running = 0

    def put(job: Job) -> None:
        nonlocal running
        jobs.put(job)
        running += 1

    def finals(cell: Cell) -> None:
        choice = store_choice(cfg, out, cell, tuning[cell.name])
        for job in (j for js in final_jobs(cfg, out, cell, choice).values() for j in js):
            put(job)

    previous = signal.signal(signal.SIGTERM, on_interrupt)  # as Ctrl-C: stop the workers' runs
    try:
        for proc in procs:
            proc.start()
        for cell in todo:
            cjobs = [j for js in tuning[cell.name].values() for _, j in js]
            left[cell.name] = len(cjobs)
            for job in cjobs:
                cell_of[job.out_dir] = cell
                put(job)
            if not cjobs:
                finals(cell)
        while running:
            try:
                folder = ended.get(timeout=1.0)
            except queue.Empty:
                codes = [proc.exitcode for proc in procs if proc.exitcode is not None]
                if any(c in (130, -signal.SIGINT, -signal.SIGTERM) for c in codes):
                    raise KeyboardInterrupt from None  # a worker's run was interrupted
                if codes:
                    raise StudyError(
                        f"a worker process ended abruptly (exit code {codes[0]}: killed, or out of "
                        "memory?); the ended runs are kept: run the same command again to resume the study"
                    ) from None
                continue
            running -= 1
            if folder in cell_of:
                cell = cell_of[folder]
                left[cell.name] -= 1
                if left[cell.name] == 0:
                    finals(cell)
    finally:
        _stop_workers(procs, jobs)
        signal.signal(signal.SIGTERM, previous)


def _stop_workers(procs: list[Any], jobs: Any) -> None:
    """End the workers of a side-by-side study, finished or interrupted: queued runs are
    dropped and idle workers end (each is sent None); a run that is still going after 10 s
    (SIGTERM came to the study alone, not to the whole process group as Ctrl-C does) gets
    SIGTERM, which stops it as it would stop a run alone."""
    import queue

    started = [proc for proc in procs if proc.pid is not None]
    try:
        while True:
            jobs.get_nowait()
    except queue.Empty:
        pass
    for proc in started:
        if proc.is_alive():
            jobs.put(None)
    for proc in started:
        proc.join(timeout=10)
    for proc in started:
        if proc.is_alive():
            proc.terminate()
    for proc in started:
        proc.join(timeout=60)
        if proc.is_alive():
            proc.kill()


def _worker(jobs: Any, ended: Any) -> None:
    """A process of :func:`run_side_by_side`: runs jobs until it is sent None. Ctrl-C goes to
    the running run (whose handler stops it) and to the study, which stops idle workers."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        while (job := jobs.get()) is not None:
            run_job(job)
            ended.put(job.out_dir)
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # the run installed its own handlers
    except KeyboardInterrupt:  # a run stopped by Ctrl-C or SIGTERM, or SIGTERM while idle
        sys.exit(130)


# --- keeping results -------------------------------------------------------------------
KEPT = ("metrics.json", "scopes.json", "config.json", "metrics.csv")  # not model.pt, not checkpoints


def _copy_ended(src: Path, dest: Path, skip: Path | None = None) -> int:
    """Copy the results (:data:`KEPT`) of every ended run under ``src`` to the same place
    under ``dest``, unless the run there has ended too (or lies under ``skip``); an unfinished
    run there is replaced. Then the choices: ``dest``'s own win over ``src``'s."""
    n = 0
    for metrics in sorted(src.rglob("metrics.json")):
        run, target = metrics.parent, dest / metrics.parent.relative_to(src)
        if ".copy" in run.name:  # a copy left half-made by a process that was killed
            continue
        if (skip and run.is_relative_to(skip)) or status(Job(run, ())) not in ENDED:
            continue
        if status(Job(target, ())) in ENDED:
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


def export(out: Path, dest: Path) -> int:
    """Copy the results of every run in ``out`` that has ended (finished or failed), without
    its model and checkpoints (small enough to commit), and the choices, to ``dest`` (same
    layout; added to what is there). Returns the number of runs copied."""
    return _copy_ended(out, dest, skip=dest)


def restore(kept: Path, out: Path) -> int:
    """The reverse of :func:`export`: every ended run of ``kept`` that has not ended in ``out``
    is copied there, so the study skips it; the choices are added. Returns the runs copied."""
    if not kept.is_dir():
        raise StudyError(f"--restore {kept}: no such folder")
    return _copy_ended(kept, out)


# --- the report --------------------------------------------------------------------------
def _pm(values: list[float]) -> str:
    if not values:
        return "not run"
    m, s = mean_std(values)
    return f"{100 * m:.2f} ± {100 * s:.2f}" if len(values) > 1 else f"{100 * m:.2f}"


def cell_results(cfg: DictConfig, out: Path, cell: Cell, choice: dict[str, float]) -> dict[str, Any]:
    """Per strategy: chosen value, per-seed final and best accuracy, mismatch; the decisions."""
    res: dict[str, Any] = {"cell": cell.key, "strategies": {}, "tuning": {}}
    for name, tjobs in tune_jobs(cfg, out, cell).items():
        res["tuning"][name] = {}
        for v, j in tjobs:
            st, r = status(j), rows(j)
            res["tuning"][name][_fmt(v)] = {
                "status": st,
                "accuracy": float(r[-1]["test_accuracy"]) if r else None,
                "diverged": st == "failed" or (bool(r) and diverged(r, num_classes(j))),
            }
    for name, jobs in final_jobs(cfg, out, cell, choice).items():
        res["strategies"][name] = {"value": choice.get(name), **final_entry(jobs)}
    res["decisions"] = decisions(cfg, res["strategies"])
    return res


def final_entry(jobs: list[Job]) -> dict[str, Any]:
    """The final runs of one strategy in one cell: per ended seed its final and best test
    accuracy, and the scope mismatch of the finished ones.

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
        "final": [float(r[-1]["test_accuracy"]) for _, _, r in scored],
        "best": [max(float(row["test_accuracy"]) for row in r) for _, _, r in scored],
        "mismatch": [],
    }
    for j, st, _ in scored:
        scopes = j.out_dir / "scopes.json"
        if st == "finished" and scopes.exists():  # a failed run's scopes hold NaN
            entry["mismatch"].append(mismatch(json.loads(scopes.read_text())))
    return entry


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


def write_markdown(cfg: DictConfig, results: list[dict[str, Any]], allcells: list[Cell]) -> list[str]:
    names = list(cfg.strategies)
    axes = list(cfg.axes)
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
        vals = [_fmt(float(v)) for v in s.tune["values"]]
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
                    "*" if chosen is not None and _fmt(chosen) == v else ""
                )
                row.append(acc + mark)
            lines.append("| " + " | ".join(res["cell"][a] for a in axes) + " | " + " | ".join(row) + " |")
        lines.append("")
    lines += [
        f"## Final runs ({split} split)",
        "",
        "A failed run (stopped by the runner) counts as a seed, scored by its last evaluated accuracy.",
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
            value = "" if e["value"] is None else _fmt(e["value"])
            lines.append(
                "| "
                + " | ".join(res["cell"][a] for a in axes)
                + f" | {name} | {value} | {seeds} | {_pm(e['final'])} | {_pm(e['best'])}"
                + f" | {spread} | {drop} |"
            )
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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.study", description=__doc__.splitlines()[0])
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


if __name__ == "__main__":
    sys.exit(main())
