"""End-to-end smoke runs through Hydra, the launcher and Flower's Simulation Engine."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
FLOWER = ("flower-superlink", "flower-supernode", "flwr-simulation", "flwr-serverapp", "raylet", "gcs_server")


def _flower_pids():
    pids = set()
    for p in psutil.process_iter(["name", "cmdline"]):
        text = " ".join(p.info["cmdline"] or []) + " " + (p.info["name"] or "")
        if any(name in text for name in FLOWER):
            pids.add(p.pid)
    return pids


def _run(tmp_path, name, *overrides, timeout=240):
    out = tmp_path / name
    cmd = [sys.executable, "-m", "experiments.run", f"hydra.run.dir={out}", "num_clients=3", "num_rounds=2",
           *overrides]  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out, proc.stdout


def _metrics(out):
    m = json.loads((out / "metrics.json").read_text())
    return [{k: v for k, v in r.items() if not k.endswith("_s")} for r in m["rounds"]], m["status"]


@pytest.mark.parametrize("strategy", ["fedavg", "fedprox", "fedwsa"])
def test_strategy_runs_on_digits(tmp_path, strategy):
    before = _flower_pids()
    out, stdout = _run(tmp_path, strategy, f"strategy={strategy}")
    rows, status = _metrics(out)
    assert status == "finished"
    assert [r["round"] for r in rows] == [0, 1, 2]
    assert rows[-1]["test_accuracy"] > 0.3  # chance is 0.1
    assert rows[-1]["num_replies"] == 3 and rows[-1]["clients"] == [0, 1, 2]
    assert "round   2/2" in stdout and str(out) in stdout
    for f in ("metrics.csv", "scopes.json", "model.pt", "config.json", "flower.log"):
        assert (out / f).exists(), f
    scopes = json.loads((out / "scopes.json").read_text())
    assert len(scopes["rounds"]) == 3 and len(scopes["rounds"][1]["global"]) == len(scopes["layers"])
    assert (scopes["rounds"][1]["target"] is not None) == (strategy == "fedwsa")
    assert json.loads((out / "config.json").read_text())["config"]["strategy"]["name"] == strategy
    assert _flower_pids() <= before  # nothing left running


def test_same_seed_same_metrics(tmp_path):
    a, _ = _run(tmp_path, "a", "strategy=fedwsa", "fraction_train=0.67", "seed=4")
    b, _ = _run(tmp_path, "b", "strategy=fedwsa", "fraction_train=0.67", "seed=4")
    rows_a, _ = _metrics(a)
    assert rows_a == _metrics(b)[0]
    assert all(len(r["clients"]) == 2 for r in rows_a[1:])  # int(3 * 0.67) = 2 sampled


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
    assert _metrics(out)[1] == "running"  # rounds done so far are kept
