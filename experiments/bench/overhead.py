"""``overhead``: the same federated workload through fedwsa's Flower simulation and
through a plain PyTorch loop (:func:`plain_federation`) that does the same local
training, averaging and evaluation and nothing else (in partition order and in a random
order); wall time per round, ratio, and each round split into time with both training
processes busy, one waiting and both waiting (:class:`experiments.bench.probes.Busy`)."""

from __future__ import annotations

import argparse
import multiprocessing as mp
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import torch

from experiments.bench.probes import Busy, compose_run, fedavg, median, run_cli, table

OVERHEAD_ARGS = [
    "dataset=fmnist", "num_clients=10", "partition.alpha=0.5", "epochs=1", "num_rounds=5",
    "batch_size=64", "lr=0.01", "momentum=0.9", "weight_decay=1e-5", "strategy=fedavg",
    "client_cpus=1", "client_threads=1",
]  # fmt: skip


_CFG: Any = None


def _client(job: tuple[int, int, dict[str, np.ndarray]]) -> tuple[int, dict[str, np.ndarray], int]:
    from fedwsa.run.local_round import local_round, train_settings

    rnd, pid, state = job
    c = _CFG
    settings = train_settings(c, rnd)
    new, reply = local_round(c, pid, {k: torch.from_numpy(v) for k, v in state.items()}, settings)
    return pid, {k: v.numpy() for k, v in new.items()}, reply.num_examples


def _init_worker(cfg: Any) -> None:
    global _CFG
    _CFG = cfg
    torch.set_num_threads(cfg.client_threads)


def plain_federation(cfg: Any, workers: int, shuffle_seed: int | None = None) -> dict[str, Any]:
    """FedAvg with nothing but PyTorch and a process pool: ``workers`` processes with
    ``client_threads`` torch threads each (the layout of the simulation's Ray actors), the
    same local training (``fedwsa.run.local_round.local_round``: same data, seeds, batches), the
    same weighted average in partition order (Flower's arithmetic) and the same central
    evaluation.

    Clients are handed to the workers in partition order, or, with ``shuffle_seed``, in a
    random order each round: Flower's simulation hands them out in the order its virtual
    nodes registered, whose ids are random, so its order is random per run. With unequal
    partitions the order changes when the last worker finishes (the results do not)."""
    from fedwsa.run.factory import experiment_data, new_model, partitions
    from fedwsa.train import evaluate

    t0 = time.perf_counter()
    data = experiment_data(cfg)
    partitions(cfg)  # loaded before the fork: the workers share it
    model = new_model(cfg)
    state = {k: v.numpy().copy() for k, v in model.state_dict().items()}
    rows, marks = [], {}
    ctx = mp.get_context("fork")
    with ctx.Pool(workers, initializer=_init_worker, initargs=(cfg,)) as pool:
        marks["start"] = time.perf_counter() - t0
        rng = np.random.default_rng(shuffle_seed)
        for rnd in range(1, cfg.num_rounds + 1):
            t = time.perf_counter()
            order = rng.permutation(cfg.num_clients) if shuffle_seed is not None else range(cfg.num_clients)
            replies = sorted(pool.map(_client, [(rnd, int(pid), state) for pid in order], chunksize=1))
            state = fedavg([(params, n) for _, params, n in replies])
            model.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})
            torch.set_num_threads(1)
            loss, acc = evaluate(model, data.x_test, data.y_test, cfg.eval_batch_size)
            end = time.perf_counter()
            rows.append({"round": rnd, "test_accuracy": acc, "test_loss": loss,
                         "round_time_s": end - t, "ended_at": end})  # fmt: skip
    marks["total"] = time.perf_counter() - t0
    return {"rows": rows, "marks": marks}


def bench_overhead(args: argparse.Namespace) -> dict[str, Any]:
    cfg = compose_run([*OVERHEAD_ARGS, f"seed={args.seed}"])
    variants = ["fedwsa", "plain", "plain_random_order"]
    runs: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
    with tempfile.TemporaryDirectory(prefix="fedwsa-bench-") as tmp:
        for rep in range(args.repeat):
            for variant in variants[rep % 3 :] + variants[: rep % 3]:  # each variant first once in 3
                if variant == "fedwsa":
                    r = run_cli([*OVERHEAD_ARGS, f"seed={args.seed}"], Path(tmp) / f"sim{rep}", busy=True)
                    r["rows"] = r["rows"][1:]  # round 0 is the initial model
                    n = len(r["rows"])
                    span = (r["t0"] + r["marks"]["round_1"], r["t0"] + r["marks"][f"round_{n}"])
                else:
                    shuffle = 1000 + rep if variant == "plain_random_order" else None
                    watcher = Busy(psutil.Process().children) if args.workers == 2 else None
                    r = plain_federation(cfg, workers=args.workers, shuffle_seed=shuffle)
                    r["busy"] = watcher
                    span = (r["rows"][0]["ended_at"], r["rows"][-1]["ended_at"])
                if r["busy"] is not None:  # rounds 2-5: seconds per round with 2, 1, 0 processes training
                    r["busy"] = r["busy"].split(*span, rounds=len(r["rows"]) - 1)
                runs[variant].append(r)
                times = [row["round_time_s"] for row in r["rows"]]
                print(f"rep {rep} {variant:>6}: rounds {[round(x, 2) for x in times]} s, "
                      f"final accuracy {r['rows'][-1]['test_accuracy']:.4f}", flush=True)  # fmt: skip
    summary = []
    for variant, rs in runs.items():
        per_round = [median([row["round_time_s"] for row in r["rows"]]) for r in rs]
        steady = [median([row["round_time_s"] for row in r["rows"][1:]]) for r in rs]
        summary.append({
            "variant": variant, "median_round_s": median(per_round), "median_round_2_to_5_s": median(steady),
            "round_1_s": median([r["rows"][0]["round_time_s"] for r in rs]),
            "final_accuracy": rs[0]["rows"][-1]["test_accuracy"],
            "same_accuracy_every_rep": len({r["rows"][-1]["test_accuracy"] for r in rs}) == 1,
            **{k: median([r["busy"][k] for r in rs]) for k in ("both_train_s", "one_waits_s", "both_wait_s")},
            "others_cpu_while_both_train": rs[0]["busy"]["others_cpu_while_both_train"]
            and median([r["busy"]["others_cpu_while_both_train"] for r in rs]),
        })  # fmt: skip
    ratio = summary[0]["median_round_s"] / summary[1]["median_round_s"]
    steady_ratio = summary[0]["median_round_2_to_5_s"] / summary[1]["median_round_2_to_5_s"]
    random_ratio = summary[0]["median_round_s"] / summary[2]["median_round_s"]
    print(table(summary, list(summary[0])))
    print(f"ratio fedwsa / plain, median round: {ratio:.3f}; rounds 2-5: {steady_ratio:.3f}; "
          f"fedwsa / plain in random order: {random_ratio:.3f}")  # fmt: skip
    same = all(
        a["test_accuracy"] == b["test_accuracy"]
        for v in variants[1:] for r in runs[v]
        for a, b in zip(runs["fedwsa"][0]["rows"], r["rows"], strict=True)
    )  # fmt: skip
    print(f"per-round accuracy identical in every variant and repetition: {same}")
    return {"settings": OVERHEAD_ARGS, "workers": args.workers, "summary": summary, "ratio": ratio,
            "ratio_rounds_2_to_5": steady_ratio, "ratio_to_random_order": random_ratio,
            "accuracy_identical": same, "runs": runs}  # fmt: skip
