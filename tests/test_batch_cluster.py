"""Sweeps on a batch cluster through Hydra's submitit launcher: with
``hydra/launcher=submitit_local`` (the same plugin as ``submitit_slurm``, jobs run here),
each job runs its own simulation; what SLURM allocates (``SLURM_CPUS_PER_TASK``, CPU
affinity) is what the job's Ray is given, not the whole node; results equal separate runs."""

import json
import os
import subprocess
import sys

import pytest

from experiments.launch.resources import allocation
from fedwsa.run.jobs import JOB_END
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
    one SuperLink, started by the first run, and its jobs are posted to one Flower run (each
    job's log ends with its number in that run) while their simulation settings stay the
    same; a job with other client resources gets a Flower run of its own. Every job equals
    a separate run; the last job's bad ``client_cpus`` fails the sweep with one line, and
    the sweep's Ray, SuperLink and Flower run are stopped anyway."""
    before = flower_pids()
    sweep = tmp_path / "sweep"
    cmd = [sys.executable, "-m", "experiments.run", "-m", "num_clients=3", "num_rounds=2",
           "client_cpus=1,2,999", "strategy=fedavg,fedwsa", f"hydra.sweep.dir={sweep}",
           "hydra.sweep.subdir=${hydra.job.num}"]  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 1
    assert proc.stdout.count("sweep: one Ray for all runs") == 1
    assert proc.stderr.strip().splitlines()[-1].startswith("error: client_cpus=999 exceeds the")
    assert flower_pids() <= before  # the sweep's Ray too (raylet, gcs_server)
    # jobs (client_cpus, strategy): 0 (1, fedavg), 1 (1, fedwsa), 2 (2, fedavg), 3 (2, fedwsa)
    for job, number_in_its_flower_run in enumerate([0, 1, 0, 1]):
        assert metrics(sweep / str(job))[1] == "finished"
        assert f"{JOB_END}{number_in_its_flower_run}" in (sweep / str(job) / "flower.log").read_text()
    ray = json.loads((sweep / "0" / "resources.json").read_text())["ray"]
    assert ray["shared_by_the_sweep"] and ray["address"].startswith("127.0.0.1:")
    for job, strategy in ((1, "fedwsa"), (2, "fedavg")):  # second in its Flower run; first in a new one
        alone, _ = run_entry(tmp_path, f"alone{job}", f"strategy={strategy}", "engine=inprocess")
        assert placeless(metrics(sweep / str(job))[0]) == placeless(metrics(alone)[0])
