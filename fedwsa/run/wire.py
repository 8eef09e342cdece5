"""Names and encodings of everything sent between the server and the clients.

Defined once here; ``strategies/`` and ``clients/`` wrap these flat dicts in Flower
records (``ConfigRecord`` / ``MetricRecord``) and never spell a key themselves.
Values are ``int``, ``float``, ``str``, ``bool`` or lists of floats, which both record
types accept.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

RUN_CONFIG_KEY = "fedwsa-config"  # Flower run config: the experiment as JSON
ENGINE_KEY = "fedwsa-engine"  # Flower run config: "simulation" or "deployment"
SWEEP_KEY = "fedwsa-sweep"  # Flower run config: a sweep's job folder (fedwsa.run.jobs), or ""
FINISHED = "[fedwsa] finished: "  # the ServerApp's last line, printed after its last write
PROGRESS = "progress "  # after "[fedwsa] ": a line while a round runs (clients done so far)
ARRAYS = "arrays"  # RecordDict key of the model parameters (Flower's default)
CONFIG = "config"  # RecordDict key of the train settings (Flower's default)
METRICS = "metrics"  # RecordDict key of the reply metrics
EXPERIMENT = "experiment"  # train settings, in a sweep's Flower run: the experiment as JSON

# train settings (server -> client) that every strategy shares; "server-round" is Flower's
# name. Each algorithm's own keys are defined in its core module (fedwsa.fedprox, fedwsa.wsa,
# fedwsa.feddyn, ...) and read there by its client term.
ROUND = "server-round"
LR = "lr"
EPOCHS = "local-epochs"
LOCAL_STEPS = "local-steps"
BATCH_SIZE = "batch-size"
MOMENTUM = "momentum"
WEIGHT_DECAY = "weight-decay"
SHARED = frozenset({ROUND, LR, EPOCHS, LOCAL_STEPS, BATCH_SIZE, MOMENTUM, WEIGHT_DECAY})

# reply (client -> server): parameters under ARRAYS, these numbers under METRICS.
# "num-examples" is the weight Flower's FedAvg reads. Nothing else: what the server can
# compute itself (a client's scope, which partition it trained) it does not ask for.
NUM_EXAMPLES = "num-examples"
TRAIN_LOSS = "train-loss"
PEAK_MEMORY = "peak-memory-mb"  # the most GPU memory torch held in the round (0 on a CPU)
REPLY_KEYS = frozenset({NUM_EXAMPLES, TRAIN_LOSS, PEAK_MEMORY})
PARTITION_ID = "partition-id"  # query reply (deployment) and train config (simulation)
WHERE = "where"  # RecordDict key of the reply's ConfigRecord saying where the client trained
RAY_NODE = "ray-node"  # in it: the Ray node id in simulation, "" elsewhere (recorded, never used)


@dataclass(frozen=True)
class TrainSettings:
    """What a client needs to run one round of local training.

    The server loop sends the fields up to ``local_steps`` (:func:`encode_train`); each
    strategy adds its own keys (Flower's FedProx its ``proximal-mu``, FedWSA its lambda and
    target), which arrive in ``knobs`` for the client terms (``fedwsa.regularizers``); no
    such key is FedAvg's plain local SGD.
    """

    server_round: int
    lr: float
    epochs: int
    batch_size: int
    momentum: float = 0.0
    weight_decay: float = 0.0
    local_steps: int = 0  # > 0: this many SGD steps instead of ``epochs``
    knobs: dict[str, Any] = field(default_factory=dict)  # the strategy's own keys, as sent


def encode_train(s: TrainSettings) -> dict[str, Any]:
    """Flat dict for the round's ``ConfigRecord``: the local training settings that every
    strategy shares, and ``knobs``."""
    return {
        **s.knobs, ROUND: s.server_round, LR: s.lr, EPOCHS: s.epochs, LOCAL_STEPS: s.local_steps,
        BATCH_SIZE: s.batch_size, MOMENTUM: s.momentum, WEIGHT_DECAY: s.weight_decay,
    }  # fmt: skip


def decode_train(d: Any, ignore: frozenset[str] = frozenset()) -> TrainSettings:
    """The settings in a round's config (a dict or a ``ConfigRecord``): :func:`encode_train`'s
    shared keys, and every other key (but ``ignore``) in ``knobs``."""
    return TrainSettings(
        server_round=int(d[ROUND]), lr=float(d[LR]), epochs=int(d[EPOCHS]), local_steps=int(d[LOCAL_STEPS]),
        batch_size=int(d[BATCH_SIZE]), momentum=float(d[MOMENTUM]), weight_decay=float(d[WEIGHT_DECAY]),
        knobs={k: v for k, v in d.items() if k not in SHARED and k not in ignore},
    )  # fmt: skip


@dataclass(frozen=True)
class TrainReply:
    """What a client reports after local training, beside its parameters."""

    num_examples: int
    train_loss: float
    peak_memory_mb: float = 0.0  # recorded, never used for aggregation


def encode_reply(r: TrainReply) -> dict[str, Any]:
    """Flat dict for the reply's ``MetricRecord``."""
    return {NUM_EXAMPLES: r.num_examples, TRAIN_LOSS: r.train_loss, PEAK_MEMORY: r.peak_memory_mb}


def decode_reply(d: Any) -> TrainReply:
    """Inverse of :func:`encode_reply`: exactly its keys, an integer count and a finite loss
    (``ValueError`` says what is wrong)."""
    keys = set(d.keys())
    if keys != REPLY_KEYS:
        extra, missing = sorted(keys - REPLY_KEYS), sorted(REPLY_KEYS - keys)
        raise ValueError(f"metrics must hold exactly {sorted(REPLY_KEYS)}; extra {extra}, missing {missing}")
    n, loss = d[NUM_EXAMPLES], d[TRAIN_LOSS]
    # finite first: int(inf) raises OverflowError, which no caller expects (found by tests/test_fuzz.py)
    if isinstance(n, bool) or not isinstance(n, int | float) or not np.isfinite(n) or n != int(n):
        raise ValueError(f"num-examples is {n!r}, not a whole number")
    if isinstance(loss, bool) or not isinstance(loss, int | float) or not np.isfinite(loss):
        raise ValueError(f"train-loss is {loss!r}, not a finite number")
    mem = d[PEAK_MEMORY]
    if isinstance(mem, bool) or not isinstance(mem, int | float) or not 0 <= mem < float("inf"):
        raise ValueError(f"peak-memory-mb is {mem!r}, not a number >= 0")
    return TrainReply(num_examples=int(n), train_loss=float(loss), peak_memory_mb=float(mem))


def check_reply(
    arrays: dict[str, np.ndarray], metrics: Any, shapes: dict[str, tuple[int, ...]], num_examples: int
) -> TrainReply | str:
    """A client's reply decoded, or why it must not be aggregated.

    Rejects parameters of the wrong names, count or shapes, non-finite parameters,
    metrics other than :data:`REPLY_KEYS`, a non-finite loss, and an example count other
    than ``num_examples``, the size of the client's partition as the server computes it
    (FedAvg weighs each client by it: a client must not choose its own weight).
    """
    if set(arrays) != set(shapes):
        return f"parameters {sorted(set(arrays) ^ set(shapes))[:3]} do not match the model's"
    for name, a in arrays.items():
        if tuple(a.shape) != tuple(shapes[name]):
            return f"{name} has shape {tuple(a.shape)}, expected {tuple(shapes[name])}"
        if np.issubdtype(a.dtype, np.floating) and not np.isfinite(a).all():
            return f"{name} holds NaN or Inf"
    try:
        reply = decode_reply(metrics)
    except (KeyError, TypeError, ValueError) as e:
        return f"malformed metrics ({e})"
    if reply.num_examples != num_examples:
        return f"num-examples is {reply.num_examples}, the client's partition holds {num_examples}"
    return reply
