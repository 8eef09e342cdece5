"""``clients``: the per-client regime. Many clients per round, each with little work, where
what fedwsa spends per client (not per sample) decides the speed.

Workloads (``WORKLOADS``): Synthetic(1, 1) with ``logreg`` (10,000 clients) and Fashion-MNIST
with the ``cnn`` on small IID partitions (1,000 clients of 60 examples), FedAvg, 1 local
epoch, at 10, 100 and 1,000 clients per round. Variants, interleaved, each in a fresh process:

- ``plain``: :func:`plain_loop`, a plain PyTorch loop doing exactly the same work in one
  process with one torch thread: the same sampled clients, data, initial model, batches and
  SGD steps, FedAvg's weighted average in partition order, the central evaluation; one model
  object for the whole run and nothing else;
- ``inprocess``: ``python -m experiments.run engine=inprocess`` (one process, one thread);
- ``simulation``: ``python -m experiments.run`` on Flower's Simulation Engine (Ray, 2
  client actors with one thread each on this 2-core machine).

Every variant must reach the same test accuracy in every round (checked; the table says so).
Time per round: the median over the rounds after the first (the first pays one-time imports
and caches) and over the repeats; ratios to ``plain``. ``--profile`` also runs one in-process
round under cProfile and summarises where the time goes by function.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from experiments.bench.probes import compose_run, fedavg, median, run_cli, table
from experiments.launch import PROJECT_DIR

WORKLOADS: dict[str, list[str]] = {
    "synthetic": ["dataset=synthetic", "model=logreg", "num_clients=10000", "lr=0.01"],
    "fmnist": ["dataset=fmnist", "model=cnn", "num_clients=1000", "partition=iid", "lr=0.01"],
}
COMMON = ["strategy=fedavg", "epochs=1", "client_threads=1", "client_cpus=1", "checkpoint_every=1000"]
PER_ROUND = (10, 100, 1000)


def overrides(workload: str, per_round: int, rounds: int, seed: int) -> list[str]:
    args = WORKLOADS[workload]
    n = int(next(a for a in args if a.startswith("num_clients=")).split("=")[1])
    return [*args, *COMMON, f"fraction_train={per_round / n:g}", f"num_rounds={rounds}", f"seed={seed}"]


def plain_loop(args: list[str]) -> list[dict[str, Any]]:
    """FedAvg with nothing but PyTorch, in this process, one thread: per round, the clients the
    server's seeded sampler draws (``strategies.grid``), each trained from the global model on
    its data with its seeded batch order (``fedwsa.train``), averaged with Flower's arithmetic
    in partition order, then evaluated. One model object serves every client."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    from fedwsa.run.factory import client_data, experiment_data, new_model
    from fedwsa.train import derive_seed, evaluate, local_batches

    torch.set_num_threads(1)
    cfg = compose_run(args)
    if cfg.strategy.name != "fedavg":
        raise ValueError(f"the plain loop is FedAvg only, got strategy={cfg.strategy.name}")
    data = experiment_data(cfg)
    model = new_model(cfg)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    rng = np.random.default_rng(cfg.seeds.sampling)
    rows = []
    for rnd in range(1, cfg.num_rounds + 1):
        t = time.perf_counter()
        pids = sorted(int(p) for p in rng.choice(cfg.num_clients, cfg.sample_size, replace=False))
        replies = []
        for pid in pids:
            x, y = client_data(cfg, pid)
            model.load_state_dict(state)
            seed = derive_seed(cfg.seeds.train, rnd, pid)
            opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                                  weight_decay=cfg.weight_decay)  # fmt: skip
            model.train()
            gen = torch.Generator().manual_seed(seed)
            for xb, yb in local_batches(x, y, cfg.batch_size, gen, epochs=cfg.epochs, steps=cfg.local_steps):
                opt.zero_grad(set_to_none=True)
                F.cross_entropy(model(xb), yb).backward()
                opt.step()
            replies.append(({k: v.numpy().copy() for k, v in model.state_dict().items()}, int(x.shape[0])))
        state = {k: torch.from_numpy(v) for k, v in fedavg(replies).items()}  # in partition order
        model.load_state_dict(state)
        loss, acc = evaluate(model, data.x_test, data.y_test, cfg.eval_batch_size)
        rows.append({"round": rnd, "test_accuracy": acc, "test_loss": loss,
                     "round_time_s": time.perf_counter() - t})  # fmt: skip
    return rows


def _plain_in_a_process(args: list[str]) -> list[dict[str, Any]]:
    code = (
        "import json, sys; from experiments.bench.clients import plain_loop; "
        "print('ROWS ' + json.dumps(plain_loop(sys.argv[1:])))"
    )
    out = subprocess.run([sys.executable, "-c", code, *args], cwd=PROJECT_DIR, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"the plain loop failed:\n{out.stderr[-2000:]}")
    line = next(ln for ln in out.stdout.splitlines() if ln.startswith("ROWS "))
    return list(json.loads(line[5:]))


def profile_inprocess(args: list[str], top: int = 25) -> str:
    """One in-process run under cProfile; the functions with the most cumulative time."""
    from experiments.launch.inprocess import run_inprocess

    with tempfile.TemporaryDirectory(prefix="fedwsa-bench-") as tmp:
        cfg = compose_run(args, tmp)
        prof = cProfile.Profile()
        prof.runcall(run_inprocess, cfg)
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("cumulative").print_stats(top)
    return buf.getvalue()


def bench_clients(args: argparse.Namespace) -> dict[str, Any]:
    rounds = max(args.rounds, 2)
    variants = ["plain", "inprocess", "simulation"]
    sizes = list(args.per_round)
    cells = [(w, s) for w in args.workloads for s in sizes]
    runs: dict[tuple[str, int, str], list[list[dict[str, Any]]]] = {}
    with tempfile.TemporaryDirectory(prefix="fedwsa-bench-") as tmp:
        for rep in range(args.repeat):
            for w, s in cells:
                ov = overrides(w, s, rounds, args.seed)
                for variant in variants[rep % 3 :] + variants[: rep % 3]:
                    if variant == "plain":
                        rows = _plain_in_a_process(ov)
                    else:
                        engine = [f"engine={variant}"] if variant == "inprocess" else []
                        out = Path(tmp) / f"{w}{s}{variant}{rep}"
                        rows = run_cli([*ov, *engine], out)["rows"][1:]  # round 0: the initial model
                    runs.setdefault((w, s, variant), []).append(rows)
                    steady = median([r["round_time_s"] for r in rows[1:]])
                    print(f"rep {rep} {w:>9} {s:>4}/round {variant:>10}: {steady:.3f} s per round "
                          f"(round 1 {rows[0]['round_time_s']:.2f} s), final accuracy "
                          f"{rows[-1]['test_accuracy']:.4f}", flush=True)  # fmt: skip
    summary = []
    for w, s in cells:
        plain = runs[(w, s, "plain")]
        base = median([median([r["round_time_s"] for r in rows[1:]]) for rows in plain])
        for variant in variants:
            rs = runs[(w, s, variant)]
            steady = median([median([r["round_time_s"] for r in rows[1:]]) for rows in rs])
            same = all(
                [r["test_accuracy"] for r in rows] == [r["test_accuracy"] for r in plain[0]] for rows in rs
            )
            summary.append({
                "workload": w, "clients_per_round": s, "variant": variant, "round_s": steady,
                "round_1_s": median([rows[0]["round_time_s"] for rows in rs]),
                "ratio_to_plain": steady / base, "per_client_extra_ms": 1000 * (steady - base) / s,
                "same_accuracy_as_plain": same, "final_accuracy": rs[0][-1]["test_accuracy"],
            })  # fmt: skip
    print(table(summary, list(summary[0])))
    keep = ("round", "test_accuracy", "test_loss", "round_time_s")  # not each round's 1,000 client ids
    slim = {
        "|".join(map(str, k)): [[{c: r[c] for c in keep} for r in rs] for rs in v] for k, v in runs.items()
    }
    result: dict[str, Any] = {"rounds": rounds, "common": COMMON, "workloads": WORKLOADS, "summary": summary,
                              "runs": slim}  # fmt: skip
    if args.profile:
        profiles = {}
        for w in args.workloads:
            text = profile_inprocess(overrides(w, max(sizes), 2, args.seed))
            profiles[w] = text
            print(f"--- cProfile, engine=inprocess, {w}, {max(sizes)} clients per round, 2 rounds\n{text}")
        result["profiles"] = profiles
    return result
