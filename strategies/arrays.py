"""Flower's ArrayRecord to and from ``{name: numpy array}``, for strategies whose math is
written over numpy (``fedwsa.scaffold``, ``fedwsa.fednova``, ``fedwsa.feddyn``), and the
per-client arrays such a strategy adds to each client's train message."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

import numpy as np
from flwr.app import Array, ArrayRecord, Message, RecordDict

if TYPE_CHECKING:
    from strategies.grid import PartitionGrid


def to_numpy(record: ArrayRecord) -> dict[str, np.ndarray]:
    return {k: v.numpy() for k, v in record.items()}


def to_record(arrays: dict[str, np.ndarray]) -> ArrayRecord:
    return ArrayRecord({k: Array(np.ascontiguousarray(v)) for k, v in arrays.items()})


def with_client_arrays(
    messages: Iterable[Message], grid: PartitionGrid, key: str,
    arrays_of: Callable[[int], dict[str, np.ndarray] | None],
) -> list[Message]:  # fmt: skip
    """Each train message with its client's own arrays under ``key``, ``arrays_of(partition
    id)`` (the per-client state the server keeps: SCAFFOLD's ``c - c_i``, FedDyn's ``g_k``,
    MOON's previous model); a client with none (``None``) gets its message unchanged."""
    out = []
    for m in messages:
        a = arrays_of(grid.partition_of[m.metadata.dst_node_id])
        if a is None:
            out.append(m)
            continue
        content = RecordDict(dict(m.content.items()))
        content[key] = to_record(a)
        meta = m.metadata
        out.append(Message(content, dst_node_id=meta.dst_node_id, message_type=meta.message_type,
                           group_id=meta.group_id))  # fmt: skip
    return out
