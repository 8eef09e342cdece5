"""``federation``: wall time of a loopback federation vs the same simulation, whole command,
interleaved: each repetition runs ``experiments.run`` and ``experiments.federate`` (4
clients, 3 rounds, digits, FedWSA, same seed) one after the other; both must end at the
same final accuracy."""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from experiments.bench.probes import median
from fedwsa.run.results import RunFolder

ARGS = ["num_clients=4", "num_rounds=3", "dataset=digits", "strategy=fedwsa", "seed=0"]


def _timed(entry: str, out: Path) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", entry, f"hydra.run.dir={out}", *ARGS], check=True,
                   stdout=subprocess.DEVNULL)  # fmt: skip
    return time.perf_counter() - t0


def _final_accuracy(out: Path) -> float:
    return float(RunFolder(out).rows()[-1]["test_accuracy"])


def bench_federation(args: argparse.Namespace) -> dict[str, Any]:
    times: dict[str, list[float]] = {"simulation": [], "federation": []}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeat):
            sim, fed = Path(tmp) / f"sim{i}", Path(tmp) / f"fed{i}"
            times["simulation"].append(_timed("experiments.run", sim))
            times["federation"].append(_timed("experiments.federate", fed))
            acc = _final_accuracy(sim), _final_accuracy(fed)
            if acc[0] != acc[1]:
                raise RuntimeError(f"simulation and federation end at different accuracies: {acc}")
    med = {k: median(v) for k, v in times.items()}
    result = {"args": ARGS, "seconds": times, "median_s": med, "ratio": med["federation"] / med["simulation"]}
    print(f"simulation {med['simulation']:.1f} s, federation {med['federation']:.1f} s (medians of "
          f"{args.repeat}), ratio {result['ratio']:.2f}; same final accuracy")  # fmt: skip
    return result
