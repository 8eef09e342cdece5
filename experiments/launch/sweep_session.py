"""One Ray, one SuperLink and one Flower run shared by the simulations of a sweep.

A Hydra multirun (basic launcher) or a study runs its jobs one after another in one process;
starting Ray, a SuperLink and a Flower run for each costs seconds per job
(``python -m experiments.bench sweep``). A :class:`SweepSession` starts each part when the
first job needs it and keeps it for the next jobs; :meth:`SweepSession.stop` (or leaving its
``with`` block, also on Ctrl-C or a failed run) stops them all, by PID.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import psutil

from experiments.launch.processes import (
    LaunchError,
    free_port,
    last_error_line,
    marked_processes,
    stop_tree,
    wait_dead,
)
from experiments.launch.resources import allocation, check_client_cpus, federation
from experiments.launch.simulation import simulate
from experiments.launch.submit import check_finished, follow, start_flwr_run, write_run_config
from experiments.launch.superlink import flower_env, start_superlink, write_connection
from fedwsa.run import jobs
from fedwsa.run.config import ExperimentConfig


@dataclass
class _Ray:
    address: str
    temp: str


@dataclass
class _SuperLink:
    home: Path
    env: dict[str, str]
    procs: list[subprocess.Popen[bytes]]


@dataclass
class _FlowerRun:
    proc: subprocess.Popen[bytes]
    fed: str  # the simulation settings it was started with
    folder: Path  # its job folder (fedwsa.run.jobs)
    next: int = 0  # the number of the next job posted to it


class SweepSession:
    """The shared Ray, SuperLink and Flower run of one sweep, each started on first use."""

    def __init__(self) -> None:
        self._ray: _Ray | None = None
        self._link: _SuperLink | None = None
        self._run: _FlowerRun | None = None

    def __enter__(self) -> SweepSession:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def simulate(self, cfg: ExperimentConfig) -> None:
        """:func:`~experiments.launch.simulation.simulate` for a job of the sweep: posted to the
        sweep's Flower run, on its SuperLink and Ray, unless the job names its own cluster or
        ``sweep_ray=false``. The Flower run keeps its simulation process, virtual nodes and
        Ray actors from job to job; a job interrupted or ending without its last line ends it
        (the next job starts another)."""
        if not cfg.sweep_ray or cfg.ray_address:
            simulate(cfg)
            return
        alloc = allocation()
        check_client_cpus(cfg, alloc)
        cfg = dataclasses.replace(cfg, ray_address=self.ray_address())
        ray = {**alloc, "address": cfg.ray_address, "shared_by_the_sweep": True}
        out = Path(cfg.out_dir)
        (out / "resources.json").write_text(json.dumps({"ray": ray}, indent=1))
        run = self.flower_run(cfg, federation(cfg))
        n = run.next
        run.next += 1
        jobs.post(run.folder, n, cfg.to_json())
        log = out / "flower.log"
        ended = False
        code: int | None = None
        assert run.proc.stdout is not None
        try:
            ended = follow(run.proc.stdout, log, cfg.verbose, lambda ln: ln.strip() == f"{jobs.JOB_END}{n}")
        finally:
            if not ended:  # interrupted, or the Flower run died: nothing of it may go on
                code = run.proc.poll()
                self.end_run()
        check_finished(out, log, 0 if ended else (code if code is not None else 1))

    def ray_address(self) -> str:
        """The sweep's Ray head, started (with this job's allocation) on first use. Its
        processes are found by its own temp folder and address and stopped by PID (``ray
        stop`` would stop other users' Ray too)."""
        if self._ray is not None:
            return self._ray.address
        alloc = allocation()
        temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's socket paths are bounded
        self._ray = _Ray(f"127.0.0.1:{free_port()}", temp)
        port = self._ray.address.split(":")[1]
        cmd = [str(Path(sys.executable).parent / "ray"), "start", "--head", "--port", port,
               "--temp-dir", temp, "--include-dashboard=false", "--disable-usage-stats",
               "--num-cpus", str(alloc["cpus"]), "--num-gpus", str(alloc["gpus"])]  # fmt: skip
        env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
        if proc.returncode != 0:
            self.stop_ray()
            why = last_error_line(proc.stderr + proc.stdout)
            raise LaunchError(f"could not start the sweep's Ray: {why}")
        print(f"[fedwsa] sweep: one Ray for all runs at {self._ray.address} ({alloc['cpus']} CPUs, "
              f"{alloc['gpus']} GPUs)", flush=True)  # fmt: skip
        return self._ray.address

    def superlink(self) -> _SuperLink:
        """The SuperLink (simulation mode) the sweep's runs are submitted to, on the sweep's Ray."""
        if self._link is not None:
            return self._link
        address = self.ray_address()
        home = Path(tempfile.mkdtemp(prefix="fedwsa-flwr-"))
        env = flower_env(home)
        env["RAY_ADDRESS"] = address
        self._link = _SuperLink(home, env, [])
        port = free_port()
        start_superlink(self._link.procs, env, port, home / "superlink.log", simulation=True)
        write_connection(home, "fedwsa-sim", f"127.0.0.1:{port}")
        return self._link

    def flower_run(self, cfg: ExperimentConfig, fed: str) -> _FlowerRun:
        """The Flower run the sweep's jobs are posted to: started by the first job, and again
        when a job needs other simulation settings (``fed``: virtual nodes, client resources)
        than the run has, or the run has ended."""
        run = self._run
        if run is not None and run.fed == fed and run.proc.poll() is None:
            return run
        self.end_run()
        link = self.superlink()
        folder = Path(tempfile.mkdtemp(prefix="jobs-", dir=link.env["FLWR_HOME"]))
        run_config = write_run_config(cfg, folder / "run_config.toml", "simulation", sweep=folder)
        proc = start_flwr_run([], link.env, "fedwsa-sim", run_config, fed)
        self._run = _FlowerRun(proc, fed, folder)
        return self._run

    def end_run(self) -> None:
        """End the sweep's Flower run: ``stop`` for its ServerApp, then its processes (``flwr
        run`` and the simulation process the SuperLink started for it) are stopped, by PID."""
        if self._run is None:
            return
        jobs.stop(self._run.folder)
        stop_tree(self._run.proc, force=True)
        if self._link is not None and self._link.procs:
            with contextlib.suppress(psutil.Error):
                for child in psutil.Process(self._link.procs[0].pid).children(recursive=True):
                    with contextlib.suppress(psutil.Error):
                        if "flwr-simulation" in " ".join(child.cmdline()):
                            for p in [*child.children(recursive=True), child]:
                                p.kill()
        self._run = None

    def stop_superlink(self) -> None:
        self.end_run()
        if self._link is None:
            return
        for proc in self._link.procs:
            stop_tree(proc, force=True)
        shutil.rmtree(self._link.home, ignore_errors=True)
        self._link = None

    def stop_ray(self) -> None:
        """Stop the sweep's Ray (its processes, by PID) and remove its temp folder."""
        if self._ray is None:
            return
        procs = marked_processes((self._ray.temp, self._ray.address))
        for p in procs:
            with contextlib.suppress(psutil.Error):
                p.kill()
        wait_dead(procs, 15)
        shutil.rmtree(self._ray.temp, ignore_errors=True)
        self._ray = None

    def stop(self) -> None:
        """Stop everything the session started: the Flower run, the SuperLink, then Ray."""
        self.stop_superlink()
        self.stop_ray()
