"""Performance benchmarks: ``python -m experiments.bench <name> [options]``.

Each prints a table and writes JSON (``--out``, default ``docs/bench/<name>.json``).
Variants are interleaved within one invocation and repeated; medians and ratios are
reported. Results and commands are collected in ``docs/PERFORMANCE.md``.

- ``overhead``: the same federated workload through fedwsa's Flower simulation and
  through a plain PyTorch loop (``plain_federation`` below) that does the same local
  training, averaging and evaluation and nothing else (in partition order and in a random
  order); wall time per round, ratio, and each round split into time with both training
  processes busy, one waiting and both waiting (:class:`Busy`).
- ``step``: one local SGD step with plain cross-entropy, FedProx and WSA (kl, w2), fused
  and autograd, on the NIID-Bench CNN and the VGG-style model (random input).
- ``scale``: 100 to 100,000 clients (``dataset=synthetic``), 10 sampled per round: memory
  of all processes together, time per round, time to start; with one epoch of each
  sampled client's data and with the same work per sampled client at every size
  (``local_steps`` steps of equal batches).
- ``startup``: time from the command to the first round, and from the last round to exit.
- ``gpu``: fedwsa (in process) vs a plain PyTorch loop on one GPU, fp32 and bf16.
- ``federation``: a loopback federation vs the same simulation, whole command.
- ``sweep``: a Hydra multirun's start-up per run, with one Ray for the sweep and without.
- ``tracking``: each experiment tracker's cost per round, start and finish (server side).
- ``clients``: the per-client regime (10 to 1,000 clients per round, little work each):
  fedwsa in process and in Flower's simulation against a plain PyTorch loop doing the same work.
- ``flower_sweep``: Flower's own per-node message sweep, timed alone at each client count
  (why a round costs more at 10,000 clients; see ``docs/PERFORMANCE.md``).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from experiments.bench.clients import PER_ROUND, WORKLOADS, bench_clients
from experiments.bench.federation import bench_federation
from experiments.bench.flower_sweep import bench_flower_sweep
from experiments.bench.gpu import bench_gpu
from experiments.bench.overhead import bench_overhead
from experiments.bench.probes import save
from experiments.bench.scale import SCALE_WORK, bench_scale
from experiments.bench.startup import bench_startup
from experiments.bench.step import bench_step
from experiments.bench.sweep import bench_sweep
from experiments.bench.tracking import bench_tracking

BENCHMARKS: dict[str, Callable[[argparse.Namespace], dict[str, Any]]] = {
    "overhead": bench_overhead, "step": bench_step, "scale": bench_scale, "startup": bench_startup,
    "flower_sweep": bench_flower_sweep, "federation": bench_federation, "gpu": bench_gpu,
    "tracking": bench_tracking, "sweep": bench_sweep, "clients": bench_clients,
}  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m experiments.bench", description=__doc__.split("\n\n")[0])
    p.add_argument("name", choices=sorted(BENCHMARKS))
    p.add_argument("--repeat", type=int, default=3, help="repetitions (interleaved where there are variants)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=2, help="overhead: processes of the plain loop")
    p.add_argument("--threads", type=int, default=1, help="step: torch threads")
    p.add_argument("--batch", type=int, default=64, help="step: batch size")
    p.add_argument("--steps", type=int, default=20, help="step: steps per timing sample")
    p.add_argument(
        "--clients",
        type=int,
        nargs="+",
        default=[100, 1000, 10000, 100000],
        help="scale, flower_sweep: client counts",
    )
    p.add_argument("--dataset", default="synthetic", help="scale: synthetic (any size) or fmnist (<= 10,000)")
    p.add_argument(
        "--equal-steps", type=int, default=2000, help="scale, synthetic: local steps of the equal work"
    )
    p.add_argument("--runs", type=int, default=12, help="sweep: runs per sweep")
    p.add_argument("--rounds", type=int, default=6, help="scale, tracking: rounds per run")
    p.add_argument(
        "--work",
        nargs="+",
        choices=sorted(SCALE_WORK),
        default=["epoch", "equal"],
        help="scale: workloads (epoch: one local epoch; equal: the same steps for every client)",
    )
    p.add_argument(
        "--per-round", type=int, nargs="+", default=list(PER_ROUND), help="clients: clients per round"
    )
    p.add_argument(
        "--workloads", nargs="+", choices=sorted(WORKLOADS), default=list(WORKLOADS), help="clients: datasets"
    )
    p.add_argument("--profile", action="store_true", help="clients: also profile one in-process run")
    p.add_argument("--out", default=None, help="JSON file (default docs/bench/<name>.json)")
    args = p.parse_args(argv)
    save(args.name, BENCHMARKS[args.name](args), args.out)


if __name__ == "__main__":
    main()
