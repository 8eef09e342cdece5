"""The ServerApp: builds the model and strategy, runs the rounds, writes the results.

The experiment arrives as JSON in Flower's run config (key ``fedwsa-config``), the same
way in simulation and deployment. Every round the global model is evaluated centrally
on the dataset's test split and a row is appended to ``metrics.json`` / ``metrics.csv``.
"""

from __future__ import annotations

import logging
from contextlib import suppress
from typing import Any

import numpy as np
import torch
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg, FedProx

from fedwsa.robust import clip_updates
from fedwsa.run import checkpoint
from fedwsa.run.checkpoint import Checkpoint
from fedwsa.run.client import experiment_data, new_model
from fedwsa.run.config import ExperimentConfig
from fedwsa.run.results import RunLog, scope_stats
from fedwsa.run.wire import (
    ARRAYS,
    ENGINE_KEY,
    FINISHED,
    RUN_CONFIG_KEY,
    TrainSettings,
    check_reply,
    decode_reply,
    encode_train,
)
from fedwsa.train import evaluate
from fedwsa.wsa import model_scope, scoped_names
from strategies.fedwsa import FedWSA
from strategies.grid import PartitionGrid

app = ServerApp()


class Recorder:
    """Flower callbacks that turn each round into a row of results (see fedwsa.run.results)."""

    def __init__(self, cfg: ExperimentConfig, grid: PartitionGrid) -> None:
        self.cfg, self.grid = cfg, grid
        self.data = experiment_data(cfg)
        self.model = new_model(cfg)
        self.names = scoped_names(self.model, cfg.strategy.scope_all)
        self.shapes = {k: tuple(v.shape) for k, v in self.model.state_dict().items()}
        self.log = RunLog(cfg.out_dir, self.names)
        self.strategy: Any = None
        self.train_info: dict[str, Any] = {}

    def check_reply(self, reply: Message) -> str | None:
        """Reject replies that must not reach the global model (see ``fedwsa.run.wire.check_reply``)."""
        content = reply.content
        if len(content.array_records) != 1 or len(content.metric_records) != 1:
            return "expected one ArrayRecord and one MetricRecord"
        arrays = {k: v.numpy() for k, v in next(iter(content.array_records.values())).items()}
        metrics = next(iter(content.metric_records.values()))
        return check_reply(arrays, metrics, self.shapes, len(self.names))

    def train_metrics(self, records: list[RecordDict], weight_key: str) -> MetricRecord:
        """``train_metrics_aggr_fn``: weighted mean train loss; keeps client scopes aside."""
        reports = [decode_reply(next(iter(r.metric_records.values()))) for r in records]
        total = sum(r.num_examples for r in reports)
        loss = sum(r.train_loss * r.num_examples for r in reports) / total
        self.train_info = {
            "train_loss": loss,
            "num_replies": len(reports),
            "clients": [r.partition_id for r in reports],
            "scopes": scope_stats([r.scope for r in reports]),
        }
        return MetricRecord({"train-loss": loss, "num-replies": len(reports)})

    def evaluate(self, server_round: int, arrays: ArrayRecord) -> MetricRecord:
        """``evaluate_fn``: central test metrics and global scope; writes the round's row."""
        self.model.load_state_dict(arrays.to_torch_state_dict())
        loss, acc = evaluate(self.model, self.data.x_test, self.data.y_test, self.cfg.eval_batch_size)
        info, self.train_info = self.train_info, {}
        if server_round and not info:
            info = {"num_replies": 0}  # the round was skipped
        sent = getattr(self.strategy, "sent", {}).get(server_round)
        scopes = {
            "global": model_scope(self.model, self.names).tolist(),
            "target": None if sent is None else sent.tolist(),
            **info.pop("scopes", {}),
        }
        row = self.log.add_round(
            {"round": server_round, "test_accuracy": acc, "test_loss": loss,
             "num_failures": len(self.grid.failed) if server_round else 0,
             "failed_clients": self.grid.failed if server_round else [], **info},
            scopes,
        )  # fmt: skip
        train = f"  train_loss {info['train_loss']:.4f}" if "train_loss" in info else ""
        replied = f"  clients {info['num_replies']}/{self.cfg.sample_size}" if info else ""
        print(
            f"[fedwsa] round {server_round:>3}/{self.cfg.num_rounds}  acc {acc:.4f}  "
            f"loss {loss:.4f}{train}{replied}  elapsed {row['elapsed_s']:.1f}s",
            flush=True,
        )
        return MetricRecord({"accuracy": acc, "loss": loss})


def build_strategy(cfg: ExperimentConfig, recorder: Recorder) -> FedAvg:
    """Flower's FedAvg / FedProx, or our FedWSA; sampling is done by the PartitionGrid."""
    common: dict[str, Any] = dict(
        fraction_train=1.0, fraction_evaluate=0.0, min_train_nodes=1, min_available_nodes=1,
        train_metrics_aggr_fn=recorder.train_metrics,
    )  # fmt: skip
    s = cfg.strategy
    if s.name == "fedprox":
        return FedProx(proximal_mu=s.proximal_mu, **common)
    if s.name == "fedwsa":
        target = model_scope(recorder.model, recorder.names)
        return FedWSA(initial_target=target, names=recorder.names, fusion=s.fusion,
                      align_global=s.align_global, **common)  # fmt: skip
    return FedAvg(**common)


class RunFailed(RuntimeError):
    """The run cannot go on (too many failed rounds, results not writable); one line."""


def _clip(replies: list[Message], arrays: ArrayRecord, factor: float) -> list[Message]:
    """Clip the good replies' updates to ``factor`` x the median update norm (in place)."""
    good = [r for r in replies if not r.has_error()]
    base = {k: v.numpy() for k, v in arrays.items()}
    params = [{k: v.numpy() for k, v in r.content[ARRAYS].items()} for r in good]  # type: ignore[union-attr]
    clipped, scales = clip_updates(params, base, factor)
    for r, new, scale in zip(good, clipped, scales, strict=True):
        if scale < 1.0:
            r.content[ARRAYS] = ArrayRecord({k: Array(np.ascontiguousarray(v)) for k, v in new.items()})
    if any(x < 1.0 for x in scales):
        print(f"[fedwsa] clipped updates, scales {[round(x, 3) for x in scales]}", flush=True)
    return replies


class Session:
    """One run: the round loop, with checkpoints after rounds and resume from them.

    Flower's ``Strategy.start`` numbers rounds from 1 on every call, so the loop is ours
    (the same calls in the same order: configure_train, send_and_receive, aggregate_train,
    central evaluation); that is what lets a resumed run continue at round ``r + 1``.
    """

    def __init__(self, grid: Grid, cfg: ExperimentConfig, assign: bool = False) -> None:
        self.cfg = cfg
        self.grid = PartitionGrid(
            grid,
            cfg.num_clients,
            cfg.sample_size,
            cfg.seeds.sampling,
            cfg.node_wait_s,
            cfg.min_fit_clients,
            assign=assign,
        )
        self.recorder = Recorder(cfg, self.grid)
        self.grid.validate = self.recorder.check_reply
        self.strategy = self.recorder.strategy = build_strategy(cfg, self.recorder)
        self.arrays = ArrayRecord(self.recorder.model.state_dict())
        self.done = 0  # rounds completed
        self.failed_rounds = 0  # consecutive rounds without an aggregate
        self.saved = 0  # last round checkpointed

    # --- checkpoints --------------------------------------------------------------------
    def save(self) -> None:
        state: dict[str, Any] = {"failed_rounds": self.failed_rounds}
        if isinstance(self.strategy, FedWSA):
            state.update(self.strategy.state())
        ckpt = Checkpoint(
            self.done, dict(self.arrays.to_torch_state_dict()),  # fresh tensors, deserialised
            self.cfg.identity(), state, self.grid.state(), self.recorder.log.state(),
        )  # fmt: skip
        checkpoint.save(self.cfg.out_dir, ckpt)
        self.saved = self.done

    def restore(self) -> bool:
        """Continue from the newest good checkpoint; False when there is none."""
        ckpt, problems = checkpoint.load_latest(self.cfg.out_dir, self.cfg.identity())
        for p in problems:
            print(f"[fedwsa] skipped a bad checkpoint: {p}", flush=True)
        if ckpt is None:
            return False
        self.arrays = ArrayRecord(ckpt.params)
        self.done = self.saved = ckpt.round
        self.failed_rounds = int(ckpt.strategy.get("failed_rounds", 0))
        if isinstance(self.strategy, FedWSA):
            self.strategy.restore(ckpt.strategy)
        self.grid.restore(ckpt.sampler)
        self.recorder.log.restore(ckpt.log)
        where = checkpoint.folder(self.cfg.out_dir)
        print(f"[fedwsa] resumed after round {ckpt.round} from {where}", flush=True)
        return True

    # --- the loop -------------------------------------------------------------------------
    def run(self) -> None:
        cfg = self.cfg
        if not (cfg.resume and self.restore()):
            self.recorder.evaluate(0, self.arrays)
        s = cfg.strategy
        settings = TrainSettings(
            server_round=0, lr=cfg.lr, epochs=cfg.epochs, local_steps=cfg.local_steps,
            batch_size=cfg.batch_size, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
            proximal_mu=s.proximal_mu,
            wsa_lambda=s.wsa_lambda, wsa_distance=s.distance, wsa_scope_all=s.scope_all,
        )  # fmt: skip
        train_config = ConfigRecord(encode_train(settings))
        for rnd in range(self.done + 1, cfg.num_rounds + 1):
            messages = self.strategy.configure_train(rnd, self.arrays, train_config, self.grid)
            replies = list(self.grid.send_and_receive(messages, timeout=cfg.round_timeout_s))
            if cfg.update_clip:
                replies = _clip(replies, self.arrays, cfg.update_clip)
            new, _ = self.strategy.aggregate_train(rnd, replies)
            if new is None:
                self.failed_rounds += 1
            else:
                self.arrays, self.failed_rounds = new, 0
            self.recorder.evaluate(rnd, self.arrays)
            self.done = rnd
            if self.failed_rounds >= cfg.max_failed_rounds:
                raise RunFailed(
                    f"{self.failed_rounds} rounds in a row without enough good replies "
                    f"(max_failed_rounds={cfg.max_failed_rounds}); the clients' errors are in the log"
                )
            if rnd % cfg.checkpoint_every == 0 or rnd == cfg.num_rounds:
                self.save()
        final = {k: torch.as_tensor(v) for k, v in self.arrays.to_torch_state_dict().items()}
        self.recorder.log.finish(final)

    def fail(self, error: str) -> None:
        """Mark the results as failed (if they can still be written)."""
        with suppress(OSError):
            self.recorder.log.write("failed", error)


def run(grid: Grid, cfg: ExperimentConfig, assign: bool = False) -> None:
    """Run the experiment on ``grid`` (any Flower Grid: simulation or deployment).

    ``assign``: the nodes are virtual (Flower's simulation), so partitions are assigned to
    them instead of asked for (see ``strategies.grid``)."""
    session = Session(grid, cfg, assign)
    try:
        session.run()
    except OSError as e:
        what = f"{e.strerror or e} ({e.filename})" if e.filename else str(e.strerror or e)
        kept = f"checkpoints up to round {session.saved} are intact: rerun with resume=true"
        msg = (
            f"cannot write the results in {cfg.out_dir}: {what}; {kept}"
            if session.saved
            else (f"cannot write the results in {cfg.out_dir}: {what}")
        )
        session.fail(msg)
        raise RunFailed(msg) from e
    except RunFailed as e:
        session.fail(str(e))
        raise
    except TimeoutError as e:
        session.fail(str(e))
        raise RunFailed(str(e)) from e
    print(f"{FINISHED}results in {cfg.out_dir}", flush=True)


@app.main()
def main(grid: Grid, context: Context) -> None:
    text = str(context.run_config.get(RUN_CONFIG_KEY, ""))
    cfg = ExperimentConfig.from_json(text) if text else ExperimentConfig()
    if not cfg.out_dir:
        raise ValueError("out-dir is empty: launch with `python -m experiments.run` (or set it)")
    logging.getLogger("flwr").setLevel(logging.INFO if cfg.verbose else logging.WARNING)
    run(grid, cfg, assign=str(context.run_config.get(ENGINE_KEY, "")) == "simulation")
