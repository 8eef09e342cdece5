"""A sweep's runs handed, one after another, to one long-lived ServerApp.

A Hydra multirun (or a study) on Flower's Simulation Engine submits one Flower run for the
whole sweep: its ServerApp (``strategies.server_app``) runs each experiment posted here, in
order, on the same virtual nodes and Ray actors, so Flower's processes, Ray's actors and
their imports and data are paid once (issue #13 §5). The protocol is files in one folder:
the launcher writes ``job-<n>.json`` (the experiment as JSON, atomically) and, at the end,
``stop``; the ServerApp prints :data:`JOB_END` ``<n>`` after each job, finished or not.
"""

from __future__ import annotations

import time
from pathlib import Path

from fedwsa.run.results import atomic_write

JOB_END = "[fedwsa] job ended: "  # + the job's number: the ServerApp's last line for a job
STOP = "stop"


def job_file(folder: Path, n: int) -> Path:
    return folder / f"job-{n}.json"


def post(folder: Path, n: int, experiment_json: str) -> None:
    """Hand job ``n`` to the ServerApp (whole or not at all: written to a temporary name, renamed)."""
    atomic_write(job_file(folder, n), experiment_json)


def stop(folder: Path) -> None:
    """Tell the ServerApp that no job follows."""
    atomic_write(folder / STOP, "")


def next_job(folder: Path, n: int, poll_s: float = 0.02) -> str | None:
    """Wait for job ``n`` and return its experiment JSON; ``None`` once ``stop`` is there
    instead (the ServerApp then returns and its Flower run ends)."""
    path = job_file(folder, n)
    while True:
        if path.exists():
            return path.read_text()
        if (folder / STOP).exists():
            return None
        time.sleep(poll_s)
