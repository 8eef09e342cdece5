"""Test-only fault injection: make chosen clients misbehave, to test the server's defences.

A spec is a comma-separated list of ``PARTITION:KIND`` (``PARTITION`` may be ``all``), e.g.
``1:nan_params,2:raise``. The in-process grid (``tests/inprocess.py``) applies it to the
real ClientApp's replies; through Flower, ``tests/faulty_client_app.py`` does, reading the
spec from ``$FEDWSA_TEST_FAULTS``. Production code never calls this module.
Each kind breaks one thing the server must catch (``strategies/replies.py``).
"""

from __future__ import annotations

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict

from fedwsa.run.wire import ARRAYS, METRICS, NUM_EXAMPLES, RAY_NODE, TRAIN_LOSS, WHERE

KINDS: tuple[str, ...] = (
    "raise", "nan_params", "inf_params", "wrong_shape", "missing_param", "extra_param",
    "zero_examples", "negative_examples", "more_examples", "nan_loss", "forged_scope",
    "renamed_metrics", "extra_record", "long_node",
)  # fmt: skip
FAULTS_ENV = "FEDWSA_TEST_FAULTS"
DELAY_ENV = "FEDWSA_TEST_CLIENT_DELAY_S"
DELAY_ROUNDS_ENV = "FEDWSA_TEST_DELAY_ROUNDS"
LOG_ENV = "FEDWSA_TEST_CLIENT_LOG"


class InjectedFault(RuntimeError):
    """Raised by a client told to fail (``KIND`` ``raise``)."""


def parse_faults(spec: str) -> dict[int | str, str]:
    """``"1:nan_params,all:raise"`` -> ``{1: "nan_params", "all": "raise"}``; ValueError if bad."""
    faults: dict[int | str, str] = {}
    for item in filter(None, (s.strip() for s in spec.split(","))):
        who, _, kind = item.partition(":")
        if kind not in KINDS:
            raise ValueError(f"{item!r}: expected PARTITION:KIND with KIND one of {', '.join(KINDS)}")
        faults["all" if who == "all" else int(who)] = kind
    return faults


def inject(spec: str, partition_id: int, reply: Message) -> Message:
    """This client's fault from ``spec`` (if any) applied to its train reply (in place)."""
    faults = parse_faults(spec)
    kind = faults.get(partition_id, faults.get("all"))
    if kind is None:
        return reply
    if kind == "raise":
        raise InjectedFault(f"client {partition_id}: injected fault (test_fault)")
    arrays = {k: v.numpy() for k, v in reply.content[ARRAYS].items()}  # type: ignore[union-attr]
    metrics = dict(reply.content[METRICS])  # type: ignore[arg-type]
    first = next(k for k, v in arrays.items() if np.issubdtype(v.dtype, np.floating))
    records: dict[str, object] = {}
    if kind == "nan_params":
        arrays[first] = np.full_like(arrays[first], np.nan)
    elif kind == "inf_params":
        arrays[first] = np.full_like(arrays[first], np.inf)
    elif kind == "wrong_shape":
        arrays[first] = np.zeros((*arrays[first].shape[:-1], arrays[first].shape[-1] + 1), np.float32)
    elif kind == "missing_param":
        del arrays[first]
    elif kind == "extra_param":
        arrays["injected.weight"] = np.zeros(3, np.float32)
    elif kind == "zero_examples":
        metrics[NUM_EXAMPLES] = 0
    elif kind == "negative_examples":
        metrics[NUM_EXAMPLES] = -int(metrics[NUM_EXAMPLES])  # type: ignore[call-overload]
    elif kind == "more_examples":  # claims ten times its data, to weigh ten times more
        metrics[NUM_EXAMPLES] = 10 * int(metrics[NUM_EXAMPLES])  # type: ignore[call-overload]
    elif kind == "nan_loss":
        metrics[TRAIN_LOSS] = float("nan")
    elif kind == "forged_scope":  # a scope of its own choosing beside honest parameters
        metrics.update({"scope-mu": [0.0], "scope-sigma": [-1.0]})
    elif kind == "renamed_metrics":  # the right metrics under another record name
        records["stats"] = MetricRecord(metrics)  # type: ignore[arg-type]
    elif kind == "extra_record":
        records["extra"] = MetricRecord({"x": 1.0})
    elif kind == "long_node":  # where it trained: only recorded, but bounded
        records[WHERE] = ConfigRecord({RAY_NODE: "x" * 10_000})
    content = RecordDict({k: v for k, v in reply.content.items() if k not in (ARRAYS, METRICS)})
    content[ARRAYS] = ArrayRecord({k: Array(np.ascontiguousarray(v)) for k, v in arrays.items()})
    if kind != "renamed_metrics":
        content[METRICS] = MetricRecord(metrics)  # type: ignore[arg-type]
    for name, record in records.items():
        content[name] = record  # type: ignore[assignment]
    reply.content = content
    return reply
