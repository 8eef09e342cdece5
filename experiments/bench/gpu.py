"""``gpu``: fedwsa's training on one device against a plain single-process PyTorch loop
doing the same work there: Fashion-MNIST, ResNet-18, 10 clients, Dir(0.5), 1 local epoch,
3 rounds, batch 64, FedAvg, fp32 and bf16.

(a) is fedwsa's real round loop and ClientApp handlers, ``engine=inprocess`` (the machines
with GPUs this was written for have no Ray; Flower's simulation with ``client_gpus`` 1,
0.5, 0.25 is a variant where Ray runs, not measured here); (b) loads each client's data
on the device once, trains it with ``torch.optim.SGD`` in the same batch order, averages
by example counts and evaluates, nothing else. Reported: images per second, seconds per
round, peak memory per client, GPU utilisation where ``torch.cuda.utilization`` works, and
the ratio (a)/(b) (target 1.15). Without CUDA it runs a small digits config on the CPU so
that its code is exercised; its times are not the benchmark.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from experiments.bench.probes import compose_run, median, table
from fedwsa.run.results import RunFolder

GPU_ARGS = [
    "dataset=fmnist", "model=resnet18", "num_clients=10", "partition.alpha=0.5", "epochs=1",
    "num_rounds=3", "batch_size=64", "lr=0.01", "momentum=0.9", "strategy=fedavg", "engine=inprocess",
]  # fmt: skip
CPU_ARGS = [
    "dataset=digits",
    "model=mlp",
    "num_clients=4",
    "num_rounds=2",
    "strategy=fedavg",
    "engine=inprocess",
]


def _utilisation(device: torch.device) -> float | None:
    try:
        return float(torch.cuda.utilization(device)) if device.type == "cuda" else None
    except Exception:  # needs pynvml; not there on every machine
        return None


def plain_loop(cfg: Any) -> dict[str, Any]:
    """FedAvg in plain PyTorch on ``cfg.device``: the same data, batch order and steps."""
    from fedwsa.device import autocast, resolve_device
    from fedwsa.run.factory import client_data, device_data, new_model, partition_sizes
    from fedwsa.train import derive_seed

    device = resolve_device(cfg.device)
    _, _, x_test, y_test = device_data(cfg, device)
    model = new_model(cfg).to(device)
    data = [client_data(cfg, pid, device) for pid in range(cfg.num_clients)]
    sizes = partition_sizes(cfg)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    times, accuracy = [], 0.0
    for rnd in range(1, cfg.num_rounds + 1):
        t = time.perf_counter()
        total: dict[str, torch.Tensor] = {}
        for pid, (x, y) in enumerate(data):
            model.load_state_dict(state)
            opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum)
            gen = torch.Generator().manual_seed(derive_seed(cfg.seeds.train, rnd, pid))
            model.train()
            for _ in range(cfg.epochs):
                for idx in torch.randperm(len(y), generator=gen).to(device).split(cfg.batch_size):
                    opt.zero_grad(set_to_none=True)
                    with autocast(device, cfg.precision):
                        loss = F.cross_entropy(model(x[idx]), y[idx])
                    loss.backward()
                    opt.step()
            w = sizes[pid] / sum(sizes)
            for k, v in model.state_dict().items():
                total[k] = total[k] + v * w if k in total else v * w
        state = total
        model.load_state_dict(state)
        model.eval()
        with torch.no_grad():
            pairs = zip(x_test.split(cfg.eval_batch_size), y_test.split(cfg.eval_batch_size), strict=True)
            correct = sum(int((model(xb).argmax(1) == yb).sum()) for xb, yb in pairs)
        accuracy = correct / len(y_test)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - t)
    return {"round_s": times, "final_accuracy": accuracy, "images_per_round": sum(sizes) * cfg.epochs}


def bench_gpu(args: argparse.Namespace) -> dict[str, Any]:
    from experiments.launch.inprocess import run_inprocess
    from fedwsa.device import resolve_device

    device = resolve_device("auto")
    base = GPU_ARGS if device.type == "cuda" else CPU_ARGS
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for precision in ("fp32", "bf16"):
            fed, plain, util = [], [], []
            for rep in range(args.repeat):
                cfg = compose_run(
                    [*base, f"precision={precision}", f"seed={args.seed}"], Path(tmp) / f"{precision}{rep}"
                )
                run_inprocess(cfg)
                fed.append(RunFolder(cfg.out_dir).rows())
                util.append(_utilisation(device))
                plain.append(plain_loop(cfg))
            images = plain[0]["images_per_round"]
            a = median([median([r["round_time_s"] for r in rounds[1:]]) for rounds in fed])
            b = median([median(p["round_s"]) for p in plain])
            rows.append({
                "device": str(device), "precision": precision, "fedwsa_round_s": a, "plain_round_s": b,
                "ratio": a / b, "fedwsa_images_per_s": images / a, "plain_images_per_s": images / b,
                "peak_memory_mb_per_client": max(max(r["peak_memory_mb"]) for r in fed[0][1:]),
                "gpu_utilisation_pct": util[-1],
                "final_accuracy_fedwsa": fed[0][-1]["test_accuracy"],
                "final_accuracy_plain": plain[0]["final_accuracy"],
            })  # fmt: skip
    print(table(rows, list(rows[0])))
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    note = (
        None
        if gpu
        else "no CUDA device: a small digits config on the CPU (not the benchmark); GPU rows not measured"
    )
    return {"args": base, "repeat": args.repeat, "gpu": gpu, "note": note, "rows": rows,
            "ray_variants": "not measured (client_gpus 1, 0.5, 0.25 need Ray and a GPU)"}  # fmt: skip
