"""The ServerApp: builds the model and strategy, runs the rounds, writes the results.

The experiment arrives as JSON in Flower's run config (key ``fedwsa-config``), the same
way in simulation and deployment. Every round the global model is evaluated centrally
on the dataset's test split and a row is appended to ``metrics.json`` / ``metrics.csv``.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg, FedProx

from fedwsa.client import experiment_data, new_model
from fedwsa.config import ExperimentConfig
from fedwsa.results import RunLog, scope_stats
from fedwsa.train import evaluate
from fedwsa.wire import RUN_CONFIG_KEY, TrainSettings, check_reply, decode_reply, encode_train
from fedwsa.wsa import model_scope, scoped_names
from strategies.fedwsa import FedWSA
from strategies.grid import PartitionGrid

app = ServerApp()


class Recorder:
    """Flower callbacks that turn each round into a row of results (see fedwsa.results)."""

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
        """Reject replies that must not reach the global model (see ``fedwsa.wire.check_reply``)."""
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


def run(grid: Grid, cfg: ExperimentConfig) -> None:
    """Run the experiment on ``grid`` (any Flower Grid: simulation or deployment)."""
    pgrid = PartitionGrid(
        grid, cfg.num_clients, cfg.sample_size, cfg.seeds.sampling, cfg.node_wait_s, cfg.min_fit_clients
    )
    recorder = Recorder(cfg, pgrid)
    pgrid.validate = recorder.check_reply
    strategy = recorder.strategy = build_strategy(cfg, recorder)
    s = cfg.strategy
    settings = TrainSettings(
        server_round=0, lr=cfg.lr, epochs=cfg.epochs, batch_size=cfg.batch_size,
        momentum=cfg.momentum, weight_decay=cfg.weight_decay, proximal_mu=s.proximal_mu,
        wsa_lambda=s.wsa_lambda, wsa_distance=s.distance, wsa_scope_all=s.scope_all,
    )  # fmt: skip
    result = strategy.start(
        grid=pgrid,
        initial_arrays=ArrayRecord(recorder.model.state_dict()),
        num_rounds=cfg.num_rounds,
        timeout=cfg.round_timeout_s,
        train_config=ConfigRecord(encode_train(settings)),
        evaluate_fn=recorder.evaluate,
    )
    recorder.log.finish({k: torch.as_tensor(v) for k, v in result.arrays.to_torch_state_dict().items()})
    print(f"[fedwsa] finished: results in {cfg.out_dir}", flush=True)


@app.main()
def main(grid: Grid, context: Context) -> None:
    text = str(context.run_config.get(RUN_CONFIG_KEY, ""))
    cfg = ExperimentConfig.from_json(text) if text else ExperimentConfig()
    if not cfg.out_dir:
        raise ValueError("out-dir is empty: launch with `python -m experiments.run` (or set it)")
    logging.getLogger("flwr").setLevel(logging.INFO if cfg.verbose else logging.WARNING)
    run(grid, cfg)
