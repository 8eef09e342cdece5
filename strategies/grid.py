"""A Grid wrapper that makes client sampling and aggregation order reproducible.

Flower's node ids are random per run, so seeding ``random`` does not reproduce which
clients train. :class:`PartitionGrid` asks every node once for its ``partition-id``
(a ``query`` message), then shows the strategy, each round, only the nodes of a seeded
sample of partition ids; the strategy (``fraction_train=1``) sends to all it sees.
Replies come back sorted by partition id, so aggregation sums in a fixed order.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

import numpy as np
from flwr.app import ConfigRecord, Message, MessageType, RecordDict
from flwr.serverapp import Grid

from fedwsa.wire import CONFIG, PARTITION_ID


class PartitionGrid(Grid):
    """Delegates to ``grid``; samples ``sample_size`` of ``num_partitions`` per round."""

    def __init__(
        self, grid: Grid, num_partitions: int, sample_size: int, seed: int, wait_s: float = 120.0
    ) -> None:
        self._grid = grid
        self.num_partitions = num_partitions
        self.sample_size = sample_size
        self.wait_s = wait_s
        self.rng = np.random.default_rng(seed)
        self.node_of: dict[int, int] = {}  # partition id -> node id
        self.partition_of: dict[int, int] = {}  # node id -> partition id
        self.sampled: list[int] = []  # partition ids of the current round
        self.failures = 0  # error replies in the last send_and_receive
        self._sample: list[int] | None = None

    # --- delegation -----------------------------------------------------------------
    def set_run(self, run):  # type: ignore[no-untyped-def]
        self._grid.set_run(run)

    @property
    def run(self):  # type: ignore[no-untyped-def]
        return self._grid.run

    def create_message(self, content, message_type, dst_node_id, group_id, ttl=None):  # type: ignore[no-untyped-def]
        return self._grid.create_message(content, message_type, dst_node_id, group_id, ttl)

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        return self._grid.push_messages(messages)

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        return self._grid.pull_messages(message_ids)

    # --- what differs ---------------------------------------------------------------
    def discover(self) -> None:
        """Wait (bounded) for all nodes, then map node id <-> partition id."""
        deadline = time.monotonic() + self.wait_s
        while len(nodes := list(self._grid.get_node_ids())) < self.num_partitions:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"only {len(nodes)} of {self.num_partitions} nodes connected within "
                    f"{self.wait_s:.0f} s (node_wait_s)"
                )
            time.sleep(0.2)
        queries = [Message(RecordDict({CONFIG: ConfigRecord()}), dst_node_id=n,
                           message_type=MessageType.QUERY) for n in nodes]  # fmt: skip
        for reply in self._grid.send_and_receive(queries, timeout=self.wait_s):
            if reply.has_error():
                raise RuntimeError(
                    f"node {reply.metadata.src_node_id} failed the partition query: {reply.error.reason}"
                )
            pid = int(reply.content[CONFIG][PARTITION_ID])  # type: ignore[arg-type]
            if pid in self.node_of:
                raise RuntimeError(f"two nodes claim partition-id {pid}")
            self.node_of[pid] = reply.metadata.src_node_id
        missing = sorted(set(range(self.num_partitions)) - set(self.node_of))
        if missing:
            raise RuntimeError(f"no node holds partition-id(s) {missing[:10]}")
        self.partition_of = {n: p for p, n in self.node_of.items()}

    def get_node_ids(self) -> Iterable[int]:
        """The nodes of this round's seeded sample, in partition-id order."""
        if not self.node_of:
            self.discover()
        if self._sample is None:
            pids = self.rng.choice(self.num_partitions, self.sample_size, replace=False)
            self.sampled = sorted(int(p) for p in pids)
            self._sample = [self.node_of[p] for p in self.sampled]
        return list(self._sample)

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        """Send, then return replies sorted by partition id; the next call samples anew."""
        messages = list(messages)
        if not messages:
            return []
        replies = list(self._grid.send_and_receive(messages, timeout=timeout))
        self._sample = None
        self.failures = len(messages) - sum(not r.has_error() for r in replies)
        return sorted(replies, key=lambda r: self.partition_of.get(r.metadata.src_node_id, -1))
