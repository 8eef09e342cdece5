"""Flower's Grid, in process (``engine=inprocess``'s, ``experiments/launch/inprocess.py``):
every node runs the real ClientApp handlers directly, with test-only faults injected into
their replies where asked.

The round loop (``strategies.rounds.run``) runs unchanged on it, so the
reliability tests cover checkpoints, resume and faulty clients in seconds, without
starting Flower. Like Flower, a ClientApp that raises becomes an error reply.
"""

from flwr.app import Error, Message, MessageType

from clients.experiment import partition_id as _partition_id
from experiments.launch.inprocess import InProcessGrid
from fedwsa.run.config import ExperimentConfig
from fedwsa.run.wire import ROUND
from tests.faults import InjectedFault, inject


class Crash(Exception):
    """Stands for the server process dying in the middle of a round."""


class LocalGrid(InProcessGrid):
    """``engine=inprocess``'s grid, with what tests need: a server crash in a given round,
    node ids whose partitions are not in node-id order, misbehaving clients, a count of
    partition queries."""

    def __init__(
        self, cfg: ExperimentConfig, crash_in_round: int | None = None, shuffled: bool = False,
        faults: str = "",
    ) -> None:  # fmt: skip
        """``faults``: clients that misbehave, e.g. ``1:nan_params`` (``tests/faults.py``)."""
        super().__init__(cfg)
        n = cfg.num_clients  # one node per partition, as a deployment has (asked for their partition)
        self.nodes = {1000 + 7 * i: (n - 1 - i if shuffled else i) for i in range(n)}
        self.faults = faults
        self.crash_in_round = crash_in_round
        self.queries = 0

    def handle(self, m):
        if m.metadata.message_type == MessageType.QUERY:
            self.queries += 1
            return super().handle(m)
        if m.content["config"][ROUND] == self.crash_in_round:
            raise Crash(f"killed in round {self.crash_in_round}")
        reply = super().handle(m)
        if not reply.has_error():
            try:
                reply = inject(self.faults, _partition_id(self.context(m.metadata.dst_node_id), m), reply)
            except InjectedFault as e:
                reply = Message(Error(code=0, reason=f"{type(e).__name__}: {e}"), reply_to=m)
        return reply
