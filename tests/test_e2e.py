"""End-to-end smoke runs through Hydra, the launcher and Flower's Simulation Engine."""

import json
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest
import torch

from fedwsa.run.results import RunFolder
from tests.faults import DELAY_ENV, FAULTS_ENV
from tests.helpers import (
    FAULTY,
    ROOT,
    SMALL,
    flower_pids,
    metrics,
    placeless,
    round_ended,
    run_entry,
    same_metrics,
)

pytestmark = pytest.mark.slow


def _check_outputs(out, stdout, strategy, sampled, failed=()):
    rows, status = metrics(out)
    assert status == "finished"
    assert [r["round"] for r in rows] == [0, 1, 2]
    assert rows[-1]["test_accuracy"] > 0.25  # chance is 0.1
    assert all(r["num_replies"] == len(r["clients"]) == sampled - len(failed) for r in rows[1:])
    assert all(r["failed_clients"] == list(failed) for r in rows[1:])
    assert "round   2/2" in stdout and str(out) in stdout
    for f in ("metrics.csv", "scopes.json", "model.pt", "config.json"):
        assert (out / f).exists(), f
    scopes = json.loads((out / "scopes.json").read_text())
    assert len(scopes["rounds"]) == 3 and len(scopes["rounds"][1]["global"]) == len(scopes["layers"])
    assert (scopes["rounds"][1]["target"] is not None) == (strategy == "fedwsa")
    record = json.loads((out / "config.json").read_text())
    assert record["config"]["strategy"]["name"] == strategy
    here = record["machine"]  # the launcher ran here (results may differ on another CPU)
    assert here["cores"] == os.cpu_count() and here["cpu"] and isinstance(here["gpus"], list)
    assert here["torch_cpu_kernels"] == torch.backends.cpu.get_cpu_capability()  # e.g. AVX2, AVX512


@pytest.mark.parametrize(("strategy", "fault"), [("scaffold", "raise"), ("fedprox", "nan_params")])
def test_strategy_runs_on_digits_despite_a_faulty_client(tmp_path, strategy, fault):
    """Client 1 raises (or sends NaN) in every round, in Flower's real Simulation Engine
    (SCAFFOLD: its per-client correction travels in Flower's messages too)."""
    before = flower_pids()
    env = {**FAULTY, FAULTS_ENV: f"1:{fault}"}  # the real ClientApp, its replies broken by a test one
    out, stdout = run_entry(tmp_path, strategy, f"strategy={strategy}", env=env)
    _check_outputs(out, stdout, strategy, sampled=3, failed=[1])
    why = "injected fault" if fault == "raise" else "holds NaN or Inf"
    assert "client 1 failed" in stdout and why in stdout, stdout
    assert flower_pids() <= before  # nothing left running


def test_fedwsa_runs(fedwsa_run):
    """Same seed, same metrics: the resumed run below and the loopback federation
    (test_federation.py) must both match this run to the bit."""
    out, stdout = fedwsa_run
    _check_outputs(out, stdout, "fedwsa", sampled=2)  # int(3 * 0.67) = 2 sampled per round


def test_bad_config_is_one_line_exit_2():
    # a value (through Hydra and the typed config), an option and a key (refused before Hydra);
    # the other bad values take the first path and are checked in process (test_config.py)
    for args in (["partition.alpha=-1"], ["strategy=fedfoo"], ["nope=3"]):
        proc = subprocess.run([sys.executable, "-m", "experiments.run", *args], cwd=ROOT,
                              capture_output=True, text=True, timeout=120)  # fmt: skip
        assert proc.returncode == 2, (args, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
        assert "Traceback" not in proc.stdout + proc.stderr


def test_sigkill_mid_round_then_resume_matches_the_uninterrupted_run(tmp_path, fedwsa_run):
    """The launcher and every Flower process die at once in round 2 (clients held 5 s in
    it by a test-only delay); ``resume=true`` finishes with the fixture's exact metrics."""
    before = flower_pids()
    out = tmp_path / "killed"
    args = [f"hydra.run.dir={out}", *SMALL, "strategy=fedwsa", "fraction_train=0.67"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "experiments.run", *args], cwd=ROOT, stdout=subprocess.PIPE, text=True,
        env={**os.environ, **FAULTY, DELAY_ENV: "5"}, start_new_session=True,
    )  # fmt: skip
    for line in proc.stdout:
        if round_ended(line, 1):
            break
    # round 1's checkpoint is written right after its line; round 2's clients sleep 5 s
    assert _wait_for(lambda: (out / "checkpoints" / "round-00001.ckpt").exists(), 30)
    for p in [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]:
        p.kill()
    proc.wait(timeout=30)
    for pid in flower_pids() - before:  # anything the tree had handed off
        psutil.Process(pid).kill()
    rows, status = metrics(out)
    assert status == "running" and [r["round"] for r in rows] == [0, 1]
    assert (out / "checkpoints" / "round-00001.ckpt").exists()

    _, stdout = run_entry(tmp_path, "killed", "strategy=fedwsa", "fraction_train=0.67", "resume=true")
    assert "continuing after round 1 of 2" in stdout and "resumed after round 1" in stdout
    assert same_metrics(out, fedwsa_run[0])
    assert flower_pids() <= before


def _wait_for(condition, timeout_s):
    """Poll ``condition`` until it holds (True) or ``timeout_s`` passes (False)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _alive(pids):
    """The processes of ``pids`` still running (zombies are dead: init reaps them late)."""
    alive = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                alive.append(pid)
        except psutil.NoSuchProcess:
            pass
    return alive


def test_ctrl_c_stops_every_process(tmp_path):
    """SIGINT mid-run: exit 130, nothing left running, metrics.json says interrupted.

    The test acts on the state it needs, not on a progress line (Flower relays those from its
    log stream, up to rounds late: the run could end before the signal came, exit 0, as CI
    saw): it waits until round 1 is in metrics.json and the run still says running, and each
    client sleeps 1 s per round (the test ClientApp), so 50 rounds cannot end first."""
    out = tmp_path / "interrupted"
    log = (tmp_path / "stdout.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "experiments.run", f"hydra.run.dir={out}", "num_clients=2", "num_rounds=50"],
        cwd=ROOT, stdout=log, stderr=subprocess.PIPE, text=True, start_new_session=True,
        env={**os.environ, **FAULTY, DELAY_ENV: "1"},
    )  # fmt: skip
    children = set()

    def round_1_written_and_running():
        children.update(c.pid for c in psutil.Process(proc.pid).children(recursive=True))
        run = RunFolder(out)
        return run.status() == "running" and len(run.rows()) >= 2

    assert _wait_for(round_1_written_and_running, 180), RunFolder(out).metrics()
    os.kill(proc.pid, signal.SIGINT)
    code, stderr = proc.wait(timeout=60), proc.stderr.read()
    assert code == 130, stderr
    assert "interrupted" in stderr
    assert _wait_for(lambda: not _alive(children), 10), _alive(children)
    doc = RunFolder(out).metrics()  # rounds done so far are kept, and how the run ended
    assert (doc["status"], doc["signal"]) == ("interrupted", "SIGINT")
    assert doc["last_round"] == doc["rounds"][-1]["round"] >= 1


def test_inprocess_engine_gives_the_simulation_s_results(tmp_path, fedwsa_run):
    """engine=inprocess: no Flower process, no Ray; the same rows to the last digit."""
    before = flower_pids()
    out, stdout = run_entry(
        tmp_path, "inprocess", "strategy=fedwsa", "fraction_train=0.67", "engine=inprocess"
    )
    assert "in this process (engine=inprocess)" in stdout
    assert placeless(metrics(out)[0]) == placeless(metrics(fedwsa_run[0])[0])
    assert flower_pids() == before  # it started nothing
