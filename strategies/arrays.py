"""Flower's ArrayRecord to and from ``{name: numpy array}``, for strategies whose math is
written over numpy (``fedwsa.scaffold``, ``fedwsa.fednova``)."""

from __future__ import annotations

import numpy as np
from flwr.app import Array, ArrayRecord


def to_numpy(record: ArrayRecord) -> dict[str, np.ndarray]:
    return {k: v.numpy() for k, v in record.items()}


def to_record(arrays: dict[str, np.ndarray]) -> ArrayRecord:
    return ArrayRecord({k: Array(np.ascontiguousarray(v)) for k, v in arrays.items()})
