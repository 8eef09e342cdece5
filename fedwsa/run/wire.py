"""Names and encodings of everything sent between the server and the clients.

Defined once here; ``strategies/`` and ``clients/`` wrap these flat dicts in Flower
records (``ConfigRecord`` / ``MetricRecord``) and never spell a key themselves.
Values are ``int``, ``float``, ``str``, ``bool`` or lists of floats, which both record
types accept.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

RUN_CONFIG_KEY = "fedwsa-config"  # Flower run config: the experiment as JSON
ENGINE_KEY = "fedwsa-engine"  # Flower run config: "simulation" or "deployment"
FINISHED = "[fedwsa] finished: "  # the ServerApp's last line, printed after its last write
ARRAYS = "arrays"  # RecordDict key of the model parameters (Flower's default)
CONFIG = "config"  # RecordDict key of the train settings (Flower's default)
METRICS = "metrics"  # RecordDict key of the reply metrics

# train settings (server -> client); "server-round" and "proximal-mu" are Flower's names
ROUND = "server-round"
LR = "lr"
EPOCHS = "local-epochs"
LOCAL_STEPS = "local-steps"
BATCH_SIZE = "batch-size"
MOMENTUM = "momentum"
WEIGHT_DECAY = "weight-decay"
PROXIMAL_MU = "proximal-mu"
WSA_LAMBDA = "wsa-lambda"
WSA_DISTANCE = "wsa-distance"
WSA_SCOPE_ALL = "wsa-scope-all"
TARGET_MU = "wsa-target-mu"
TARGET_SIGMA = "wsa-target-sigma"

# reply (client -> server); "num-examples" is the weight Flower's FedAvg reads
NUM_EXAMPLES = "num-examples"
TRAIN_LOSS = "train-loss"
SCOPE_MU = "scope-mu"
SCOPE_SIGMA = "scope-sigma"
PARTITION_ID = "partition-id"


@dataclass(frozen=True)
class TrainSettings:
    """What a client needs to run one round of local training."""

    server_round: int
    lr: float
    epochs: int
    batch_size: int
    momentum: float = 0.0
    weight_decay: float = 0.0
    local_steps: int = 0  # > 0: this many SGD steps instead of ``epochs``
    proximal_mu: float = 0.0
    wsa_lambda: float = 0.0
    wsa_distance: str = "kl"
    wsa_scope_all: bool = False
    target: np.ndarray | None = None  # (L, 2) target scope, FedWSA only


def encode_scope(scope: np.ndarray, mu_key: str, sigma_key: str) -> dict[str, list[float]]:
    s = np.asarray(scope, dtype=np.float64).reshape(-1, 2)
    return {mu_key: s[:, 0].tolist(), sigma_key: s[:, 1].tolist()}


def decode_scope(d: Any, mu_key: str, sigma_key: str) -> np.ndarray:
    mu, sigma = list(d[mu_key]), list(d[sigma_key])
    if len(mu) != len(sigma):
        raise ValueError(f"{mu_key} has {len(mu)} entries but {sigma_key} has {len(sigma)}")
    return np.array([mu, sigma], dtype=np.float64).T.reshape(-1, 2)


def encode_train(s: TrainSettings) -> dict[str, Any]:
    """Flat dict for the round's ``ConfigRecord``."""
    d: dict[str, Any] = {
        ROUND: s.server_round, LR: s.lr, EPOCHS: s.epochs, LOCAL_STEPS: s.local_steps,
        BATCH_SIZE: s.batch_size, MOMENTUM: s.momentum, WEIGHT_DECAY: s.weight_decay,
        PROXIMAL_MU: s.proximal_mu,
        WSA_LAMBDA: s.wsa_lambda, WSA_DISTANCE: s.wsa_distance, WSA_SCOPE_ALL: s.wsa_scope_all,
    }  # fmt: skip
    if s.target is not None:
        d.update(encode_scope(s.target, TARGET_MU, TARGET_SIGMA))
    return d


def decode_train(d: Any) -> TrainSettings:
    """Inverse of :func:`encode_train` (accepts a dict or a ``ConfigRecord``)."""
    return TrainSettings(
        server_round=int(d[ROUND]), lr=float(d[LR]), epochs=int(d[EPOCHS]), local_steps=int(d[LOCAL_STEPS]),
        batch_size=int(d[BATCH_SIZE]), momentum=float(d[MOMENTUM]),
        weight_decay=float(d[WEIGHT_DECAY]), proximal_mu=float(d[PROXIMAL_MU]),
        wsa_lambda=float(d[WSA_LAMBDA]), wsa_distance=str(d[WSA_DISTANCE]),
        wsa_scope_all=bool(d[WSA_SCOPE_ALL]),
        target=decode_scope(d, TARGET_MU, TARGET_SIGMA) if TARGET_MU in d else None,
    )  # fmt: skip


@dataclass(frozen=True)
class TrainReply:
    """What a client reports after local training (beside its parameters)."""

    num_examples: int
    train_loss: float
    scope: np.ndarray  # (L, 2) scope of the client's model after training
    partition_id: int


def encode_reply(r: TrainReply) -> dict[str, Any]:
    """Flat dict for the reply's single ``MetricRecord``."""
    return {
        NUM_EXAMPLES: r.num_examples, TRAIN_LOSS: r.train_loss, PARTITION_ID: r.partition_id,
        **encode_scope(r.scope, SCOPE_MU, SCOPE_SIGMA),
    }  # fmt: skip


def decode_reply(d: Any) -> TrainReply:
    """Inverse of :func:`encode_reply` (accepts a dict or a ``MetricRecord``)."""
    return TrainReply(
        num_examples=int(d[NUM_EXAMPLES]), train_loss=float(d[TRAIN_LOSS]),
        scope=decode_scope(d, SCOPE_MU, SCOPE_SIGMA), partition_id=int(d[PARTITION_ID]),
    )  # fmt: skip


def check_reply(
    arrays: dict[str, np.ndarray], metrics: Any, shapes: dict[str, tuple[int, ...]], num_layers: int
) -> str | None:
    """Why a client's reply must not be aggregated, or ``None`` if it is sound.

    Rejects parameters of the wrong names, count or shapes, non-finite parameters,
    a missing or non-positive example count, and scopes that are non-finite or do not
    match the model's scoped layers.
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
        return f"malformed metrics ({type(e).__name__}: {e})"
    if reply.num_examples <= 0:
        return f"num-examples is {reply.num_examples}"
    if reply.scope.shape != (num_layers, 2):
        return f"scope has {reply.scope.shape[0]} layers, the model {num_layers}"
    if not np.isfinite(reply.scope).all() or not np.isfinite(reply.train_loss):
        return "scope or train loss holds NaN or Inf"
    return None
