"""``sweep``: a Hydra multirun of short digits runs, its simulations on one Ray started once
(``sweep_ray=true``, the default) and each starting its own (``sweep_ray=false``): the
start-up each run pays, i.e. the job's wall time less the time its rounds took."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from experiments.bench.probes import median, table
from experiments.launch import PROJECT_DIR
from fedwsa.run.results import RunFolder

JOB = re.compile(r"\[HYDRA\]\s+#(\d+) :")


def one_sweep(folder: Path, n: int, shared: bool) -> list[dict[str, float]]:
    cmd = [sys.executable, "-m", "experiments.run", "-m", f"seed={','.join(map(str, range(n)))}",
           "num_rounds=2", "strategy=fedavg", f"sweep_ray={str(shared).lower()}", f"hydra.sweep.dir={folder}",
           "hydra.sweep.subdir=${hydra.job.num}"]  # fmt: skip
    t0 = time.monotonic()
    starts: dict[int, float] = {}
    proc = subprocess.Popen(cmd, cwd=PROJECT_DIR, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        m = JOB.search(line)
        if m:
            starts[int(m.group(1))] = time.monotonic() - t0
    end = time.monotonic() - t0
    if proc.wait() != 0:
        raise RuntimeError(f"the sweep failed: {' '.join(cmd)}")
    jobs = []
    for j in range(n):
        wall = (starts[j + 1] if j + 1 < n else end) - starts[j]
        rows = RunFolder(folder / str(j)).rows()
        rounds = sum(float(r["round_time_s"]) for r in rows[1:])
        jobs.append({"job": j, "wall_s": wall, "rounds_s": rounds, "startup_s": wall - rounds})
    return jobs


def bench_sweep(args: argparse.Namespace) -> dict[str, Any]:
    n = args.runs
    out: dict[str, Any] = {"runs": n, "repeat": args.repeat, "sweeps": []}
    with tempfile.TemporaryDirectory(prefix="fedwsa-bench-") as tmp:
        for rep in range(args.repeat):
            for shared in (True, False):  # interleaved
                jobs = one_sweep(Path(tmp) / f"{rep}-{shared}", n, shared)
                out["sweeps"].append({"sweep_ray": shared, "jobs": jobs})
                print(shared, [round(j["startup_s"], 1) for j in jobs], flush=True)
    rows: list[dict[str, Any]] = []
    for shared in (True, False):
        jobs = [j for s in out["sweeps"] if s["sweep_ray"] == shared for j in s["jobs"]]
        rows.append({
            "sweep_ray": shared,
            "first_run_startup_s": median([j["startup_s"] for j in jobs if j["job"] == 0]),
            "later_runs_startup_s": median([j["startup_s"] for j in jobs if j["job"] > 0]),
            "later_runs_wall_s": median([j["wall_s"] for j in jobs if j["job"] > 0]),
        })  # fmt: skip
    rows.append({"sweep_ray": "ratio", **{k: rows[0][k] / rows[1][k] for k in rows[0] if k != "sweep_ray"}})
    print(table(rows, list(rows[0])))
    out["median"] = rows
    return out
