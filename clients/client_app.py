"""One ClientApp for all algorithms: decode, call the core, encode.

The experiment (data, model, seeds) comes from Flower's run config (in a sweep's Flower
run, with each train message); the algorithm's settings and per-client state come with each
train message, and ``fedwsa.regularizers`` turns them into the client terms: this file names
no algorithm.
"""

from __future__ import annotations

import sys

from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.clientapp.typing import Mod

from clients.experiment import experiment, partition_id
from clients.privacy import privacy_mod
from fedwsa.run.local_round import local_round
from fedwsa.run.wire import (
    ARRAYS,
    CONFIG,
    EXPERIMENT,
    METRICS,
    PARTITION_ID,
    RAY_NODE,
    WHERE,
    decode_train,
    encode_reply,
)

# differential privacy, when the run asks for it (engine=inprocess applies these mods too)
MODS: list[Mod] = [privacy_mod]
app = ClientApp(mods=MODS)


@app.query()
def query(msg: Message, context: Context) -> Message:
    """Tell the server which partition this node holds (for seeded sampling)."""
    return Message(RecordDict({CONFIG: ConfigRecord({PARTITION_ID: partition_id(context)})}), reply_to=msg)


@app.train()
def train(msg: Message, context: Context) -> Message:
    """One round of local training from the global parameters in ``msg``."""
    cfg = experiment(msg, context)
    settings = decode_train(msg.content[CONFIG], ignore=frozenset({EXPERIMENT, PARTITION_ID}))
    state = msg.content[ARRAYS].to_torch_state_dict()  # type: ignore[union-attr]
    pid = partition_id(context, msg)
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
