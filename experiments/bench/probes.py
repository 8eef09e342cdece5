"""What the benchmarks share: the machine's description, medians and tables, the JSON
writer, and probes of a running ``experiments.run`` (memory, CPU busy time, progress lines)."""

from __future__ import annotations

import contextlib
import json
import platform
import re
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import torch

from experiments.launch import PROJECT_DIR
from experiments.launch.preflight import machine as launcher_machine
from fedwsa.run.results import RunFolder


def machine() -> dict[str, Any]:
    """The launcher's record of the machine (CPU model, torch's kernel level, GPUs), and what
    a benchmark also needs to be read: memory, versions, the load it started under."""
    return {
        **launcher_machine(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "load_average_at_start": [round(x, 2) for x in psutil.getloadavg()],
    }


def compose_run(args: list[str], out: str | Path = "unused") -> Any:
    """The experiment ``experiments.run`` builds from the overrides ``args`` (Hydra's compose API)."""
    from hydra import compose, initialize_config_dir

    from experiments.launch.preflight import CONF_DIR, resolve

    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", [*args, f"out_dir={out}"])
    return resolve(cfg)


def fedavg(replies: list[tuple[dict[str, np.ndarray], int]]) -> dict[str, np.ndarray]:
    """Flower's FedAvg arithmetic over ``(parameters, num_examples)`` in the order given:
    the sum of ``w_i * (n_i / total)`` (what a plain loop must do to match it bit for bit)."""
    total = float(sum(n for _, n in replies))
    agg: dict[str, np.ndarray] = {}
    for params, n in replies:
        for k, v in params.items():
            agg[k] = v * (n / total) if k not in agg else agg[k] + v * (n / total)
    return agg


def median(xs: list[float]) -> float:
    return float(statistics.median(xs)) if xs else float("nan")


def table(rows: list[dict[str, Any]], cols: list[str]) -> str:
    def fmt(v: Any) -> str:
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    out += ["| " + " | ".join(fmt(r.get(c, "")) for c in cols) + " |" for r in rows]
    return "\n".join(out)


def save(name: str, result: dict[str, Any], out: str | None) -> None:
    path = Path(out) if out else PROJECT_DIR / "docs" / "bench" / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    result = {"benchmark": name, "command": " ".join(["python -m experiments.bench", *sys.argv[1:]]),
              "machine": machine(), **result}  # fmt: skip
    path.write_text(json.dumps(result, indent=1))
    print(f"written to {path}")


class Watch:
    """Samples, every ``period`` s, the memory of a process and all its descendants.

    ``pss``: proportional set size (shared pages split between the processes sharing
    them), the honest "memory of all processes together"; ``rss`` counts shared pages once
    per process and so over-states it."""

    def __init__(self, pid: int, period: float = 0.5) -> None:
        self.pid, self.period = pid, period
        self.peak_pss = self.peak_rss = 0
        self.peak_procs = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                root = psutil.Process(self.pid)
                procs = [root, *root.children(recursive=True)]
            except psutil.NoSuchProcess:
                return
            pss = rss = 0
            for p in procs:
                try:
                    info = p.memory_full_info()
                    pss += info.pss
                    rss += info.rss
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    pass
            self.peak_pss, self.peak_rss = max(self.peak_pss, pss), max(self.peak_rss, rss)
            self.peak_procs = max(self.peak_procs, len(procs))
            self._stop.wait(self.period)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


# Flower log lines (verbose=true) that mark the steps of a simulation's start.
FLOWER_MARKS = {
    "superlink_up": "Using SuperLink",  # flwr run has started and found the SuperLink
    "run_submitted": "Successfully started run",  # the FAB is built and the run accepted
    "simulation_started": "Starting Flower Simulation",  # the simulation process runs
    "first_round_sent": "configure_train: Sampled",  # round 1's messages go out
}


Finder = Callable[[], list[psutil.Process]]


class Busy:
    """Samples, every ``period`` s, the CPU use of two training processes (Ray's client
    actors or the plain loop's workers): the time both train, one waits, or both wait;
    and, given ``others``, the CPU the run's other processes use while both train."""

    def __init__(self, find: Finder, others: Finder | None = None, period: float = 0.05) -> None:
        self.find, self.others, self.period = find, others, period
        # (time, dt, processes > 50 % busy, CPU seconds of the other processes in dt)
        self.samples: list[tuple[float, float, int, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        procs: list[psutil.Process] = []
        rest: list[psutil.Process] = []
        prev: tuple[float, list[float], float] | None = None
        while not self._stop.wait(self.period):
            if len(procs) != 2:
                procs, prev = self.find(), None
                mine = {p.pid for p in procs}
                rest = [p for p in self.others() if p.pid not in mine] if self.others and procs else []
                continue
            try:
                cpu = [float(sum(p.cpu_times()[:2])) for p in procs]
            except psutil.Error:
                procs, prev = [], None
                continue
            other = 0.0
            for p in rest:
                with contextlib.suppress(psutil.Error):
                    other += float(sum(p.cpu_times()[:2]))
            now = time.perf_counter()
            if prev is not None:
                dt = now - prev[0]
                busy = sum((c - c0) / dt > 0.5 for c, c0 in zip(cpu, prev[1], strict=True))
                self.samples.append((now, dt, busy, max(other - prev[2], 0.0)))
            prev = (now, cpu, other)

    def split(self, start: float, end: float, rounds: int) -> dict[str, float | None]:
        """Seconds per round with 2, 1 and 0 of the processes training, in ``[start, end]``."""
        self._stop.set()
        self._thread.join(timeout=5)
        busy = {2: 0.0, 1: 0.0, 0: 0.0}
        other_cpu = 0.0
        for t, dt, n, other in self.samples:
            if start <= t <= end:
                busy[n] += dt
                other_cpu += other if n == 2 else 0.0
        return {
            "both_train_s": busy[2] / rounds,
            "one_waits_s": busy[1] / rounds,
            "both_wait_s": busy[0] / rounds,
            # CPU seconds per second used by the run's other processes while both train
            "others_cpu_while_both_train": other_cpu / busy[2] if busy[2] and self.others else None,
        }


def run_cli(args: list[str], out: Path, watch: bool = False, busy: bool = False) -> dict[str, Any]:
    """Run ``python -m experiments.run`` with ``args``; timestamps of its progress lines.

    ``watch``: sample the memory of all its processes; ``busy``: sample its two client
    actors' CPU use (:class:`Busy`, returned as ``result["busy"]``)."""
    cmd = [sys.executable, "-m", "experiments.run", f"hydra.run.dir={out}", *args]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=PROJECT_DIR, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    w = Watch(proc.pid) if watch else None
    b = None
    if busy:  # the two client actors; the others: the launcher and all its other descendants
        b = Busy(
            lambda: descendants(proc.pid, "ClientAppActor"),
            lambda: [psutil.Process(proc.pid), *descendants(proc.pid, "")],
        )
    marks: dict[str, float] = {}
    lines = []
    assert proc.stdout is not None
    for line in proc.stdout:
        now = time.perf_counter() - t0
        lines.append(line)
        if m := re.search(r"\[fedwsa\] round\s+(\d+)/", line):
            marks[f"round_{int(m.group(1))}"] = now
        elif "[fedwsa] finished" in line:
            marks["finished"] = now
        elif "Flower Simulation Engine ->" in line:
            marks["prepared"] = now
        for key, text in FLOWER_MARKS.items():  # with verbose=true: Flower's own steps
            if text in line and key not in marks:
                marks[key] = now
    code = proc.wait()
    marks["exit"] = time.perf_counter() - t0
    if w:
        w.stop()
    if code != 0:
        raise SystemExit(f"benchmark run failed ({code}):\n{''.join(lines[-20:])}")
    rows = RunFolder(out).rows()
    result: dict[str, Any] = {"marks": marks, "rows": rows, "t0": t0}
    if b:
        result["busy"] = b
    if w:
        result.update(
            peak_pss_mb=w.peak_pss / 2**20, peak_rss_mb=w.peak_rss / 2**20, peak_processes=w.peak_procs
        )
    return result


def descendants(pid: int, text: str) -> list[psutil.Process]:
    """The descendants of ``pid`` whose command line contains ``text``."""
    found = []
    with contextlib.suppress(psutil.Error):
        for p in psutil.Process(pid).children(recursive=True):
            with contextlib.suppress(psutil.Error):
                if text in " ".join(p.cmdline()):
                    found.append(p)
    return found
