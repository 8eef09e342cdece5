"""``scale``: 100 to 100,000 clients, 10 sampled per round: memory of all processes
together, time per round, time to start; with one epoch of each sampled client's data and
with the same work per sampled client at every size (``local_steps`` steps of equal
batches). On ``dataset=synthetic`` (default: any number of clients, each its own data) or
Fashion-MNIST (``--dataset fmnist``: up to 10,000, whose clients' data shrinks as they grow)."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

import torch

from experiments.bench.probes import median, run_cli, table
from fedwsa.run.results import RunFolder


def images_per_round(out: Path, rows: list[dict[str, Any]]) -> float:
    """Median number of images the sampled clients trained on per round (from the run's
    own config.json: partition sizes, and the batches ``fedwsa.train.local_batches`` takes)."""
    from fedwsa.run.config import from_dict
    from fedwsa.run.factory import partition_sizes
    from fedwsa.train import local_batches

    cfg = from_dict(RunFolder(out).config())
    sizes = partition_sizes(cfg)

    def trained(s: int) -> int:
        idx = torch.arange(s)
        return sum(len(yb) for _, yb in local_batches(idx, idx, cfg.batch_size, epochs=cfg.epochs,
                                                      steps=cfg.local_steps))  # fmt: skip

    return median([sum(trained(sizes[c]) for c in row["clients"]) for row in rows])


# Same work per sampled client at every size: ``SCALE_STEPS`` full batches of ``SCALE_BATCH``
# images. IID splits at every size (600, 60 or 6 images per client: whole batches of 6;
# the framework's cost does not depend on the split).
# On synthetic (``--equal-steps``, default 2,000 steps of 50 with a 256-unit MLP): rounds of a
# few seconds, so that the round loop's 0.2 s polling (strategies/grid.py) does not quantise
# the comparison: with 10 steps a round took 0.23 or 0.43 s by chance, at any size.
SCALE_STEPS, SCALE_BATCH = 10, 6
SCALE_WORK = {
    "epoch": ["epochs=1", "batch_size=64"],  # the workload: work shrinks with size
    "equal": [f"local_steps={SCALE_STEPS}", f"batch_size={SCALE_BATCH}"],
}


def work_overrides(work: str, dataset: str, equal_steps: int) -> list[str]:
    if work == "equal" and dataset == "synthetic":
        return [f"local_steps={equal_steps}", "batch_size=50", "model=mlp", "model.hidden=256"]
    return SCALE_WORK[work]


def bench_scale(args: argparse.Namespace) -> dict[str, Any]:
    """Every size and workload once per repetition, repetitions interleaved (sizes in turn,
    so a slow spell of a shared machine does not land on one size); the summary gives per
    size the median over repetitions."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="fedwsa-bench-") as tmp:
        for rep, n in ((rep, n) for rep in range(args.repeat) for n in args.clients):
            sweep = [
                f"dataset={args.dataset}",
                f"num_clients={n}",
                f"fraction_train={10 / n}",
                f"num_rounds={args.rounds}",
            ]
            for work in args.work:
                part = ["partition=dirichlet", "partition.alpha=0.5", "partition.min_size=10"]
                if args.dataset == "synthetic":
                    part = ["partition=iid"]  # not used: every synthetic client has its own data
                elif n > 1000 or work == "equal":  # Dir(0.5) leaves clients empty at 6 images each
                    part = ["partition=iid"]
                work_args = work_overrides(work, args.dataset, args.equal_steps)
                args_ = [*sweep, *work_args, "lr=0.01", "strategy=fedavg", *part]
                folder = Path(tmp) / f"scale{n}-{work}-{rep}"
                r = run_cli(args_, folder, watch=True)
                times = [row["round_time_s"] for row in r["rows"][1:]]
                m = r["marks"]
                rows.append({
                    "repeat": rep, "work": work, "clients": n,
                    "partition": "own" if args.dataset == "synthetic" else part[0].split("=")[1],
                    "peak_pss_mb": r["peak_pss_mb"], "peak_rss_mb": r["peak_rss_mb"],
                    "processes": r["peak_processes"], "to_round_0_s": m.get("round_0"),
                    "round_1_s": times[0], "median_round_2_on_s": median(times[1:]),
                    "images_per_round": images_per_round(folder, r["rows"][1:]),
                    "total_s": m["exit"],
                })  # fmt: skip
                print(table(rows[-1:], list(rows[-1])), flush=True)
    summary = summarise(rows)
    print(table(rows, list(rows[0])))
    print(table(summary, list(summary[0])))
    return {
        "dataset": args.dataset,
        "rounds": args.rounds,
        "repeat": args.repeat,
        "steps": SCALE_STEPS,
        "batch": SCALE_BATCH,
        "rows": rows,
        "summary": summary,
    }


def summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per workload and size: medians over the repetitions of the median round (rounds 2
    on) and of the seconds per 10^6 images trained, each also as a ratio to the smallest size."""
    out = []
    for work in dict.fromkeys(r["work"] for r in rows):
        for n in dict.fromkeys(r["clients"] for r in rows if r["work"] == work):
            mine = [r for r in rows if r["work"] == work and r["clients"] == n]
            rounds = [r["median_round_2_on_s"] for r in mine]
            per_mega = [1e6 * r["median_round_2_on_s"] / r["images_per_round"] for r in mine]
            out.append({
                "work": work, "clients": n, "repeats": len(mine),
                "median_round_s": median(rounds), "min_round_s": min(rounds), "max_round_s": max(rounds),
                "s_per_1e6_images": median(per_mega), "peak_pss_mb": max(r["peak_pss_mb"] for r in mine),
            })  # fmt: skip
        base = next(r for r in out if r["work"] == work)
        for r in out:
            if r["work"] == work:
                r["round_vs_smallest"] = r["median_round_s"] / base["median_round_s"]
                r["per_image_vs_smallest"] = r["s_per_1e6_images"] / base["s_per_1e6_images"]
    return out
