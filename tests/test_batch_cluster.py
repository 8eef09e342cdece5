"""Sweeps on a batch cluster through Hydra's submitit launcher: with
``hydra/launcher=submitit_local`` (the same plugin as ``submitit_slurm``, jobs run here),
each job runs its own simulation; what SLURM allocates (``SLURM_CPUS_PER_TASK``, CPU
affinity) is what the job's Ray is given, not the whole node; results equal separate runs."""

import json
import os
import subprocess
import sys

import pytest

from experiments.launch.flower import allocation
from tests.helpers import ROOT, flower_pids, metrics, placeless, run_entry


def test_allocation_follows_slurm_and_affinity(monkeypatch):
    monkeypatch.delenv("SLURM_CPUS_PER_TASK", raising=False)
    whole = allocation()
    assert whole["cpus"] == len(os.sched_getaffinity(0)) and whole["cpus_from"] == "CPU affinity"
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "1")
    if whole["cpus"] > 1:
        assert allocation()["cpus"] == 1 and allocation()["cpus_from"] == "SLURM_CPUS_PER_TASK"
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", str(whole["cpus"] + 5))  # never more than the affinity
    assert allocation()["cpus"] == whole["cpus"]


@pytest.mark.slow
def test_submitit_local_sweep_runs_each_job_as_its_own_simulation(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    before = flower_pids()
    sweep = tmp_path / "sweep"
    cmd = [sys.executable, "-m", "experiments.run", "-m", "hydra/launcher=submitit_local", "num_clients=3",
           "num_rounds=2", "strategy=fedavg", "seed=0,1", f"hydra.sweep.dir={sweep}",
           "hydra.sweep.subdir=${hydra.job.num}", "hydra.launcher.timeout_min=10"]  # fmt: skip
    env = {**os.environ, "SLURM_CPUS_PER_TASK": "1"}  # what SLURM sets for --cpus-per-task=1
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert flower_pids() <= before  # every job stopped what it started
    for job in (0, 1):
        out = sweep / str(job)
        assert metrics(out)[1] == "finished"
        # the job's Ray was given the allocation, not the machine
        assert json.loads((out / "resources.json").read_text())["ray"]["cpus"] == 1
    alone, _ = run_entry(tmp_path, "alone1", "strategy=fedavg", "seed=1", "engine=inprocess")
    assert placeless(metrics(sweep / "1")[0]) == placeless(metrics(alone)[0])  # = a separate run
    assert list((sweep / ".submitit").glob("*/*_log.out"))  # submitit ran the jobs


@pytest.mark.slow
def test_a_sweep_starts_ray_once_and_stops_it_also_when_a_run_fails(tmp_path):
    """A multirun in one process (Hydra's basic launcher): its simulations share one Ray and
    one SuperLink, started by the first run; the results equal separate runs; the second
    job's bad ``client_cpus`` fails the sweep with one line, and the sweep's Ray and SuperLink
    are stopped anyway."""
    before = flower_pids()
    sweep = tmp_path / "sweep"
    cmd = [sys.executable, "-m", "experiments.run", "-m", "num_clients=3", "num_rounds=2",
           "strategy=fedavg", "client_cpus=1,999", f"hydra.sweep.dir={sweep}",
           "hydra.sweep.subdir=${hydra.job.num}"]  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 1
    assert proc.stdout.count("sweep: one Ray for all runs") == 1
    assert proc.stderr.strip().splitlines()[-1].startswith("error: client_cpus=999 exceeds the")
    assert flower_pids() <= before  # the sweep's Ray too (raylet, gcs_server)
    assert metrics(sweep / "0")[1] == "finished"
    ray = json.loads((sweep / "0" / "resources.json").read_text())["ray"]
    assert ray["shared_by_the_sweep"] and ray["address"].startswith("127.0.0.1:")
    alone, _ = run_entry(tmp_path, "alone", "strategy=fedavg", "engine=inprocess")
    assert placeless(metrics(sweep / "0")[0]) == placeless(metrics(alone)[0])
