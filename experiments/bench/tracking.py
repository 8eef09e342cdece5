"""``tracking``: what each experiment tracker costs the server per round (and to start and
finish), with the metrics of a NIID-Bench CNN run (5 scoped layers: 28 values a round).

Rounds are 0.1 s apart (a real round takes seconds), so that MLflow's asynchronous writer
drains between rounds as it does in a run; what is timed is the round's call itself."""

from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from experiments.bench.probes import median, table
from fedwsa.run.config import ExperimentConfig, MlflowConfig, TensorboardConfig, TrackingConfig, WandbConfig
from fedwsa.run.tracking import Trackers

LAYERS = ["features.0.weight", "features.3.weight", "classifier.0.weight", "classifier.2.weight",
          "classifier.4.weight"]  # fmt: skip


def _row(rnd: int) -> tuple[dict[str, Any], dict[str, Any]]:
    row = {"round": rnd, "test_accuracy": 0.5 + 0.01 * rnd, "test_loss": 1.0 / (rnd + 1), "train_loss": 0.9,
           "num_replies": 10, "num_failures": 0, "round_time_s": 12.0}  # fmt: skip
    scope = [[0.001 * j, 0.1 + 0.001 * rnd] for j in range(len(LAYERS))]
    scopes = {"global": scope, "target": scope, "client_sigma_mean": [s for _, s in scope],
              "client_sigma_std": [0.001] * len(LAYERS)}  # fmt: skip
    return row, scopes


def _config(name: str, out: Path) -> ExperimentConfig:
    every = name == "all"
    tr = TrackingConfig(
        tensorboard=TensorboardConfig(enabled=every or name == "tensorboard"),
        wandb=WandbConfig(enabled=every or name == "wandb"),
        mlflow=MlflowConfig(enabled=every or name == "mlflow", uri=f"sqlite:///{out.parent / 'mlflow.db'}"),
    )
    return dataclasses.replace(ExperimentConfig(), tracking=tr, out_dir=str(out))


def bench_tracking(args: argparse.Namespace) -> dict[str, Any]:
    os.environ.setdefault("WANDB_SILENT", "true")
    variants = ["none", "tensorboard", "wandb", "mlflow", "all"]
    reps: dict[str, list[dict[str, float]]] = {v: [] for v in variants}
    with tempfile.TemporaryDirectory(prefix="fedwsa-bench-") as tmp:
        for rep in range(args.repeat):
            for v in variants:  # interleaved
                out = Path(tmp) / f"{v}{rep}"
                out.mkdir()
                t0 = time.perf_counter()
                tr = Trackers(_config(v, out), LAYERS)
                start = time.perf_counter() - t0
                per_round = []
                for rnd in range(args.rounds):
                    row, scopes = _row(rnd)
                    t = time.perf_counter()
                    tr.round(row, scopes)
                    per_round.append(time.perf_counter() - t)
                    time.sleep(0.1)
                (out / "model.pt").write_bytes(b"0" * 250_000)  # the CNN's size
                t = time.perf_counter()
                tr.finish([_row(r)[0] for r in range(args.rounds)], out / "model.pt")
                ms = [1000 * x for x in per_round]
                rec = {"start_s": start, "round_ms_median": median(ms), "round_ms_max": max(ms),
                       "finish_s": time.perf_counter() - t}  # fmt: skip
                reps[v].append(rec)
                print(v, rec, flush=True)
    rows = [{"tracker": v, **{k: median([r[k] for r in reps[v]]) for k in reps[v][0]}} for v in variants]
    print(table(rows, list(rows[0])))
    return {"repeat": args.repeat, "rounds": args.rounds, "layers": len(LAYERS), "reps": reps, "median": rows}
