"""End-to-end smoke runs through Hydra, the launcher and Flower's Simulation Engine."""

import json
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from tests.helpers import ROOT, flower_pids, metrics, run_entry, same_metrics

pytestmark = pytest.mark.slow


def _check_outputs(out, stdout, strategy, sampled):
    rows, status = metrics(out)
    assert status == "finished"
    assert [r["round"] for r in rows] == [0, 1, 2]
    assert rows[-1]["test_accuracy"] > 0.25  # chance is 0.1
    assert all(r["num_replies"] == len(r["clients"]) == sampled for r in rows[1:])
    assert "round   2/2" in stdout and str(out) in stdout
    for f in ("metrics.csv", "scopes.json", "model.pt", "config.json"):
        assert (out / f).exists(), f
    scopes = json.loads((out / "scopes.json").read_text())
    assert len(scopes["rounds"]) == 3 and len(scopes["rounds"][1]["global"]) == len(scopes["layers"])
    assert (scopes["rounds"][1]["target"] is not None) == (strategy == "fedwsa")
    assert json.loads((out / "config.json").read_text())["config"]["strategy"]["name"] == strategy


@pytest.mark.parametrize("strategy", ["fedavg", "fedprox"])
def test_strategy_runs_on_digits(tmp_path, strategy):
    before = flower_pids()
    out, stdout = run_entry(tmp_path, strategy, f"strategy={strategy}")
    _check_outputs(out, stdout, strategy, sampled=3)
    assert flower_pids() <= before  # nothing left running


def test_fedwsa_runs_and_same_seed_gives_same_metrics(tmp_path, fedwsa_run):
    out, stdout = fedwsa_run
    _check_outputs(out, stdout, "fedwsa", sampled=2)  # int(3 * 0.67) = 2 sampled per round
    again, _ = run_entry(tmp_path, "again", "strategy=fedwsa", "fraction_train=0.67")
    assert same_metrics(again, out)


def test_bad_config_is_one_line_exit_2():
    for args in (["partition.alpha=-1"], ["strategy=fedfoo"], ["num_clients=1000"], ["nope=3"]):
        proc = subprocess.run([sys.executable, "-m", "experiments.run", *args], cwd=ROOT,
                              capture_output=True, text=True, timeout=120)  # fmt: skip
        assert proc.returncode == 2, (args, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
        assert "Traceback" not in proc.stdout + proc.stderr


def test_ctrl_c_stops_every_process(tmp_path):
    out = tmp_path / "interrupted"
    proc = subprocess.Popen(
        [sys.executable, "-m", "experiments.run", f"hydra.run.dir={out}", "num_clients=2", "num_rounds=50"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    children = set()
    deadline = time.monotonic() + 180
    for line in proc.stdout:
        children |= {c.pid for c in psutil.Process(proc.pid).children(recursive=True)}
        if "round   1/" in line or time.monotonic() > deadline:
            break
    children |= {c.pid for c in psutil.Process(proc.pid).children(recursive=True)}
    os.kill(proc.pid, signal.SIGINT)
    assert proc.wait(timeout=60) == 130
    assert "interrupted" in proc.stderr.read()
    time.sleep(0.5)
    alive = [pid for pid in children if psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie"]
    assert not alive, alive
    assert metrics(out)[1] == "running"  # rounds done so far are kept
