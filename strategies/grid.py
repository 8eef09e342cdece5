"""A Grid wrapper that makes client sampling and aggregation order reproducible.

Flower's node ids are random per run, so seeding ``random`` does not reproduce which
clients train. :class:`PartitionGrid` asks every node once for its ``partition-id``
(a ``query`` message), then shows the strategy, each round, only the nodes of a seeded
sample of partition ids; the strategy (``fraction_train=1``) sends to all it sees.
Replies come back sorted by partition id, so aggregation sums in a fixed order. What
is done with them (checks, skipping a round) is the round loop's (``strategies.rounds``).

In Flower's simulation the SuperNodes are virtual and every one can load any partition,
so with ``pool=n`` no node is asked and clients are not nodes: the run has a pool of ``n``
virtual nodes (at least the sample size), and each round the ``i``-th sampled partition
(in partition-id order) goes to the ``i``-th smallest node id, its id named in the train
message. The same clients train on the same data, in the same order, as when asked; the
number of nodes, the query round and Flower's per-node costs no longer grow with the
number of clients (100,000 clients with 10 per round need 10 nodes).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Set
from functools import cached_property
from typing import Any

import numpy as np
from flwr.app import ConfigRecord, Message, MessageType, RecordDict
from flwr.serverapp import Grid

from fedwsa.run.wire import CONFIG, PARTITION_ID

PULL_INTERVAL_S = 0.2
FIRST_WAIT_S = 0.005


def pull_wait(empty: int) -> float:
    """Seconds to wait after the ``empty``-th pull in a row that brought no reply: 5 ms,
    doubling, at most :data:`PULL_INTERVAL_S` (a reply that comes while replies stream in is
    taken within milliseconds; a long round costs a pull every 0.2 s)."""
    return min(PULL_INTERVAL_S, FIRST_WAIT_S * 2 ** (empty - 1))


class PartitionGrid(Grid):
    """Delegates to ``grid``; samples ``sample_size`` of ``num_partitions`` per round.

    Nodes that went offline are left out of the round (it waits, at most ``wait_s``, for
    at least ``min_clients`` of the sample to be online); a node that comes back with a
    new node id is asked its partition id again and rejoins.
    """

    def __init__(
        self,
        grid: Grid,
        num_partitions: int,
        sample_size: int,
        seed: int,
        wait_s: float = 120.0,
        min_clients: int = 1,
        pool: int = 0,
    ) -> None:
        self._grid = grid
        # a grid that trains a client inside each pull never needs waiting for (engine=inprocess)
        self.synchronous = bool(getattr(grid, "runs_clients_on_pull", False))
        self.assign = pool > 0  # partitions travel in the messages to a pool of virtual nodes
        self.pool = pool
        self.nodes: list[int] = []  # the pool's node ids, sorted
        self.num_partitions = num_partitions
        self.sample_size = sample_size
        self.wait_s = wait_s
        self.rng = np.random.default_rng(seed)
        self.node_of: dict[int, int] = {}  # partition id -> node id
        self.partition_of: dict[int, int] = {}  # node id -> partition id
        self.asked: set[int] = set()  # node ids already asked for their partition id
        self.drawn: list[int] = []  # partition ids drawn for the current round
        self.sampled: list[int] = []  # those of them online, sent the round
        self.min_clients = min_clients  # wait for at least this many sampled nodes online
        self._sent_to: dict[str, int] = {}  # message id -> node id, of the last round
        self.progress: Callable[[int, int, float], None] | None = None  # replies in so far
        self._sample: list[int] | None = None

    # --- checkpoint state -----------------------------------------------------------
    def state(self) -> dict[str, str]:
        """The sampler's generator, the only state later rounds depend on (JSON text)."""
        return {"rng": json.dumps(self.rng.bit_generator.state)}

    def restore(self, state: dict[str, str]) -> None:
        self.rng.bit_generator.state = json.loads(state["rng"])

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
    def _query(self, nodes: list[int]) -> None:
        """Ask ``nodes`` for their partition id; a node that comes back replaces its old id."""
        queries = [Message(RecordDict({CONFIG: ConfigRecord()}), dst_node_id=n,
                           message_type=MessageType.QUERY) for n in nodes]  # fmt: skip
        self.asked.update(nodes)  # a node id is asked once: a restarted node gets a new id
        for reply in self._grid.send_and_receive(queries, timeout=self.wait_s):
            if reply.has_error():
                continue
            pid = int(reply.content[CONFIG][PARTITION_ID])  # type: ignore[arg-type]
            self.node_of[pid] = reply.metadata.src_node_id
        self.partition_of = {n: p for p, n in self.node_of.items()}

    @cached_property
    def _every(self) -> frozenset[int]:
        """Every partition id (built once: 100,000 ids take ~2 ms)."""
        return frozenset(range(self.num_partitions))

    def _online(self) -> Set[int]:
        """Partition ids whose node is connected now (new nodes are asked who they are)."""
        nodes = set(self._grid.get_node_ids())
        if self.assign:  # every partition is online while the pool is
            if not self.nodes and len(nodes) >= self.pool:
                self.nodes = sorted(nodes)[: self.pool]
            return self._every if self.nodes and set(self.nodes) <= nodes else frozenset()
        unknown = sorted(nodes - self.asked)
        if unknown:
            self._query(unknown)
        return {p for p, n in self.node_of.items() if n in nodes}

    def _wait(self, enough: Callable[[Set[int]], bool], problem: Callable[[Set[int]], str]) -> Set[int]:
        """Poll the online partitions until ``enough``; after ``wait_s`` raise with ``problem``."""
        deadline = time.monotonic() + self.wait_s
        while not enough(online := self._online()):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{problem(online)} after {self.wait_s:.0f} s (node_wait_s)")
            time.sleep(0.5)
        return online

    def get_node_ids(self) -> Iterable[int]:
        """The online nodes of this round's seeded sample, in partition-id order."""
        if self.assign and not self.nodes:  # first call: the pool of virtual nodes must be there
            self._wait(
                bool, lambda on: f"only {len(list(self._grid.get_node_ids()))} of {self.pool} nodes up"
            )
        elif not self.assign and not self.node_of:  # first call: every partition must be there once
            every = self._every
            self._wait(
                lambda on: every <= on,
                lambda on: f"only {len(on & every)} of {self.num_partitions} partitions connected",
            )
        if self._sample is None:
            pids = sorted(
                int(p) for p in self.rng.choice(self.num_partitions, self.sample_size, replace=False)
            )
            drawn = set(pids)
            online = self._wait(
                lambda on: len(on & drawn) >= self.min_clients,
                lambda on: (
                    f"only {len(on & drawn)} of the sampled clients {pids} are online "
                    f"(min_fit_clients={self.min_clients})"
                ),
            )
            self.drawn = pids
            self.sampled = [p for p in pids if p in online]
            if self.assign:  # this round's partitions, in order, to the pool's nodes
                self.node_of = dict(zip(self.sampled, self.nodes, strict=False))
                self.partition_of = {n: p for p, n in self.node_of.items()}
            if len(self.sampled) < len(pids):
                print(f"[fedwsa] sampled clients {sorted(drawn - online)} are offline; "
                      f"training with {self.sampled}", flush=True)  # fmt: skip
            self._sample = [self.node_of[p] for p in self.sampled]
        return list(self._sample)

    def _named(self, m: Message) -> Message:
        """A copy of train message ``m`` whose config names the partition to train on."""
        content = RecordDict(dict(m.content.items()))
        config: dict[str, Any] = dict(m.content[CONFIG]) if CONFIG in m.content else {}
        content[CONFIG] = ConfigRecord({**config, PARTITION_ID: self.partition_of[m.metadata.dst_node_id]})
        return Message(content, dst_node_id=m.metadata.dst_node_id, message_type=m.metadata.message_type,
                       group_id=m.metadata.group_id)  # fmt: skip

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        """Send, then collect the replies as they come (``progress(done, total, elapsed_s)``
        after each new one), until all are in or ``timeout`` passes; return them sorted by
        partition id. The next call samples anew.

        Flower's own ``send_and_receive`` does the same push and pull, without the progress
        and sleeping 3 s between pulls in a deployment. This waits :func:`pull_wait` between pulls:
        5 ms, doubling while nothing comes, at most :data:`PULL_INTERVAL_S`; a grid that runs
        a client on each pull (``runs_clients_on_pull``: the in-process engine's) is pulled
        again at once while replies come, so its clients run back to back. (Pulling Flower's
        grid again at once instead of after 5 ms was not faster: each pull scans the pending
        messages in the simulation process, which shares the cores with the clients;
        ``docs/PERFORMANCE.md``.)"""
        messages = list(messages)
        if not messages:
            return []
        if self.assign:
            messages = [self._named(m) for m in messages]
        pending = set(self._grid.push_messages(messages))
        # Flower gives each sent message its id; an error reply that Flower itself makes
        # (e.g. "Node Unavailable") names the message it answers, not always the node
        self._sent_to = {m.metadata.message_id: m.metadata.dst_node_id for m in messages}
        replies: list[Message] = []
        start = time.monotonic()
        end = start + timeout if timeout is not None else float("inf")
        empty = 0  # pulls in a row that brought nothing
        while pending and time.monotonic() < end:
            got = list(self._grid.pull_messages(pending))
            replies += got
            pending -= {r.metadata.reply_to_message_id for r in got}
            if got and pending and self.progress is not None:
                self.progress(len(replies), len(messages), time.monotonic() - start)
            empty = 0 if got else empty + 1
            if pending and (empty or not self.synchronous):
                time.sleep(pull_wait(max(empty, 1)))
        self._sample = None
        return sorted(replies, key=self.partition_of_reply)

    def partition_of_reply(self, reply: Message) -> int:
        """The partition id whose node ``reply`` comes from, or -1 if it is no node asked."""
        node = reply.metadata.src_node_id
        if node not in self.partition_of:
            node = self._sent_to.get(reply.metadata.reply_to_message_id, node)
        return self.partition_of.get(node, -1)
