"""Helpers for the end-to-end tests: run an entry point, read metrics, list Flower processes."""

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
import torch

from fedwsa.run.config import ExperimentConfig, validate
from strategies.rounds import run
from tests.inprocess import Crash, LocalGrid

ROOT = Path(__file__).resolve().parents[1]
FLOWER = ("flower-superlink", "flower-supernode", "flwr-simulation", "flwr-serverapp", "raylet", "gcs_server")


def flower_pids():
    pids = set()
    for p in psutil.process_iter(["name", "cmdline", "status"]):
        if p.info["status"] == psutil.STATUS_ZOMBIE:  # dead, waiting for init to reap it
            continue
        text = " ".join(p.info["cmdline"] or []) + " " + (p.info["name"] or "")
        if any(name in text for name in FLOWER):
            pids.add(p.pid)
    return pids


SMALL = ("num_clients=3", "num_rounds=2")


FAULTY = {"FEDWSA_CLIENTAPP": "tests.faulty_client_app:app"}  # tests/faulty_client_app.py


def round_ended(line, rnd):
    """Whether a run's output ``line`` is the one that ends round ``rnd`` (its accuracy line),
    not a progress line within it (``[fedwsa] progress round   1/2: 1/2 clients``)."""
    return f"[fedwsa] round {rnd:>3}/" in line


def run_entry(tmp_path, name, *overrides, timeout=300, entry="experiments.run", env=None):
    """Run an entry point; ``env``: extra environment (e.g. ``FAULTY`` and its settings)."""
    out = tmp_path / name
    cmd = [sys.executable, "-m", entry, f"hydra.run.dir={out}", *SMALL, *overrides]
    proc = subprocess.run(
        cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})}
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out, proc.stdout


def metrics(out):
    m = json.loads((out / "metrics.json").read_text())
    return [{k: v for k, v in r.items() if not k.endswith("_s")} for r in m["rounds"]], m["status"]


def same_metrics(a, b):
    """Rows without the timing columns and without where clients ran (``placeless``)."""
    return placeless(metrics(a)[0]) == placeless(metrics(b)[0])


def placeless(rows):
    """Rows without ``client_nodes``: where clients trained differs between engines and
    machines, the results must not."""
    return [{k: v for k, v in r.items() if k != "client_nodes"} for r in rows]


def resumes_bit_for_bit(tmp_path, **base):
    """Run ``ExperimentConfig(**base)`` whole, then again killed in round 3 and resumed from its
    checkpoint; assert the metrics rows and model.pt are identical. Returns the whole run's rows."""
    whole = validate(ExperimentConfig(**base, out_dir=str(tmp_path / "whole")))
    run(LocalGrid(whole), whole)
    cut = validate(ExperimentConfig(**base, out_dir=str(tmp_path / "cut")))
    with pytest.raises(Crash):
        run(LocalGrid(cut, crash_in_round=3), cut)
    resumed = dataclasses.replace(cut, resume=True)
    run(LocalGrid(resumed), resumed)
    rows = metrics(tmp_path / "whole")[0]
    assert metrics(tmp_path / "cut")[0] == rows
    a = torch.load(tmp_path / "whole" / "model.pt", weights_only=True)
    b = torch.load(tmp_path / "cut" / "model.pt", weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)
    return rows
