"""Running a study's in-process runs side by side, one per worker process."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from experiments.study.preset import Cell, Job, StudyError, final_jobs, tune_jobs
from experiments.study.runner import run_job, store_choice


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
