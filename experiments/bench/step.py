"""``step``: one local SGD step with plain cross-entropy, FedProx and WSA (kl, w2), fused
and autograd, on the NIID-Bench CNN and the VGG-style model (random input)."""

from __future__ import annotations

import argparse
import functools
import time
from typing import Any

import numpy as np
import torch

from experiments.bench.probes import median, table


def bench_step(args: argparse.Namespace) -> dict[str, Any]:
    from fedwsa.models import build_model
    from fedwsa.regularizers import make_regularizer
    from fedwsa.train import sgd_step
    from fedwsa.wsa import model_scope, scoped_names

    torch.set_num_threads(args.threads)
    rows = []
    for model_name, shape in (("cnn", (1, 28, 28)), ("vgg", (3, 32, 32))):
        torch.manual_seed(0)
        model = build_model(model_name, shape, 10)
        names = scoped_names(model)
        target = model_scope(model, names) * np.array([[1.0, 1.2]])
        x, y = torch.randn(args.batch, *shape), torch.randint(0, 10, (args.batch,))
        wsa = {"wsa_lambda": 1.0, "target": target, "names": names}
        variants: dict[str, tuple[Any, bool]] = {
            "plain": (None, True),
            "fedprox": (make_regularizer(model, proximal_mu=0.01), True),
            "wsa_kl": (make_regularizer(model, **wsa), True),
            "wsa_w2": (make_regularizer(model, **wsa, distance="w2"), True),
            "fedprox_autograd": (make_regularizer(model, proximal_mu=0.01), False),
            "wsa_kl_autograd": (make_regularizer(model, **wsa), False),
        }  # fmt: skip
        opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9, weight_decay=1e-5)
        step = functools.partial(sgd_step, model, opt, x, y)  # the step training takes
        times: dict[str, list[float]] = {k: [] for k in variants}
        for _ in range(3):  # warm-up
            for reg, fused in variants.values():
                step(reg, fused)
        for _ in range(args.repeat):
            for name, (reg, fused) in variants.items():
                t = time.perf_counter()
                for _ in range(args.steps):
                    step(reg, fused)
                times[name].append((time.perf_counter() - t) / args.steps)
        plain = median(times["plain"])
        for name, ts in times.items():
            rows.append({"model": model_name, "variant": name, "median_step_ms": 1000 * median(ts),
                         "ratio_to_plain": median(ts) / plain})  # fmt: skip
    print(table(rows, ["model", "variant", "median_step_ms", "ratio_to_plain"]))
    return {"threads": args.threads, "batch": args.batch, "steps_per_sample": args.steps,
            "repeat": args.repeat, "rows": rows}  # fmt: skip
