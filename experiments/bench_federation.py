"""Wall time of a loopback federation vs the same simulation, interleaved, medians.

    python -m experiments.bench_federation --repeat 2 --out bench_federation.json

Each repetition runs ``experiments.run`` and ``experiments.federate`` (4 clients, 3 rounds,
digits, FedWSA, same seed) one after the other and times the whole command.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ARGS = ["num_clients=4", "num_rounds=3", "dataset=digits", "strategy=fedwsa", "seed=0"]


def timed(entry: str, out: Path) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", entry, f"hydra.run.dir={out}", *ARGS], check=True,
                   stdout=subprocess.DEVNULL)  # fmt: skip
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--out", type=Path, default=Path("bench_federation.json"))
    a = p.parse_args()
    times: dict[str, list[float]] = {"simulation": [], "federation": []}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(a.repeat):
            times["simulation"].append(timed("experiments.run", Path(tmp) / f"sim{i}"))
            times["federation"].append(timed("experiments.federate", Path(tmp) / f"fed{i}"))
            same = json.loads((Path(tmp) / f"sim{i}" / "metrics.json").read_text())["rounds"][-1][
                "test_accuracy"
            ]
            fed = json.loads((Path(tmp) / f"fed{i}" / "metrics.json").read_text())["rounds"][-1][
                "test_accuracy"
            ]
            assert same == fed, (same, fed)
    med = {k: statistics.median(v) for k, v in times.items()}
    result = {"args": ARGS, "seconds": times, "median_s": med, "ratio": med["federation"] / med["simulation"]}
    a.out.write_text(json.dumps(result, indent=1))
    print(f"simulation {med['simulation']:.1f} s, federation {med['federation']:.1f} s (medians of "
          f"{a.repeat}), ratio {result['ratio']:.2f}; same final accuracy; written to {a.out}")  # fmt: skip


if __name__ == "__main__":
    main()
