"""One ClientApp for all algorithms: decode, call the core, encode.

The experiment (data, model, seeds) comes from Flower's run config (in a sweep's Flower
run, with each train message); the algorithm's settings and per-client state come with each
train message, and ``fedwsa.regularizers`` turns them into the client terms: this file names
no algorithm.
"""

from __future__ import annotations

import sys
from functools import lru_cache

from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from fedwsa.run.config import ExperimentConfig
from fedwsa.run.local_round import local_round
from fedwsa.run.wire import (
    ARRAYS,
    CONFIG,
    EXPERIMENT,
    METRICS,
    PARTITION_ID,
    RAY_NODE,
    RUN_CONFIG_KEY,
    WHERE,
    decode_train,
    encode_reply,
)

app = ClientApp()


@lru_cache(maxsize=4)
def _config(text: str) -> ExperimentConfig:
    """Parsed and validated once per process (validation builds a model to check it)."""
    return ExperimentConfig.from_json(text)


def _partition_id(context: Context, msg: Message | None = None) -> int:
    """The partition the server assigned in the message (simulation), else the node's own."""
    if msg is not None and PARTITION_ID in msg.content[CONFIG]:  # type: ignore[operator]
        return int(msg.content[CONFIG][PARTITION_ID])  # type: ignore[arg-type,index]
    return int(context.node_config[PARTITION_ID])


@app.query()
def query(msg: Message, context: Context) -> Message:
    """Tell the server which partition this node holds (for seeded sampling)."""
    return Message(RecordDict({CONFIG: ConfigRecord({PARTITION_ID: _partition_id(context)})}), reply_to=msg)


@app.train()
def train(msg: Message, context: Context) -> Message:
    """One round of local training from the global parameters in ``msg``."""
    # the run's experiment; only a run that names none (a sweep's Flower run) takes the message's
    text = context.run_config.get(RUN_CONFIG_KEY) or msg.content[CONFIG].get(EXPERIMENT)  # type: ignore[union-attr]
    if not text:
        raise ValueError(f"neither the run config nor the message holds the experiment ({RUN_CONFIG_KEY})")
    cfg = _config(str(text))
    settings = decode_train(msg.content[CONFIG], ignore=frozenset({EXPERIMENT, PARTITION_ID}))
    state = msg.content[ARRAYS].to_torch_state_dict()  # type: ignore[union-attr]
    pid = _partition_id(context, msg)
    # per-client state the strategy sent beside the model (SCAFFOLD's c - c_i, FedDyn's g_k)
    extra = {k: r.to_torch_state_dict() for k, r in msg.content.array_records.items() if k != ARRAYS}
    new_state, reply = local_round(cfg, pid, state, settings, extra)
    content = RecordDict({
        ARRAYS: ArrayRecord(new_state), METRICS: MetricRecord(encode_reply(reply)),
        WHERE: ConfigRecord({RAY_NODE: _ray_node()}),
    })  # fmt: skip
    return Message(content, reply_to=msg)


def _ray_node() -> str:
    """The Ray node this ClientApp runs on (Flower's simulation runs it in a Ray actor);
    "" outside Ray (a SuperNode, the in-process engine). Ray is not imported for this."""
    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        return ""
    return str(ray.get_runtime_context().get_node_id())
