"""Flower's Grid, in process: every node runs the real ClientApp handlers directly
(with test-only faults injected into their replies where asked).

The ServerApp's round loop (``strategies.server_app.run``) runs unchanged on it, so the
reliability tests cover checkpoints, resume and faulty clients in seconds, without
starting Flower. Like Flower, a ClientApp that raises becomes an error reply.
"""

from flwr.app import Context, Error, Message, MessageType, RecordDict

from clients.client_app import _partition_id, query, train
from fedwsa.run.config import ExperimentConfig
from fedwsa.run.wire import ROUND
from tests.faults import inject


class Crash(Exception):
    """Stands for the server process dying in the middle of a round."""


class LocalGrid:
    def __init__(
        self, cfg: ExperimentConfig, crash_in_round: int | None = None, shuffled: bool = False,
        faults: str = "",
    ) -> None:  # fmt: skip
        """``faults``: clients that misbehave, e.g. ``1:nan_params`` (``tests/faults.py``)."""
        self.cfg = cfg
        self.faults = faults
        n = cfg.num_clients
        # node id -> the partition in the node's own config (shuffled: not in node-id order)
        self.nodes = {1000 + 7 * i: (n - 1 - i if shuffled else i) for i in range(n)}
        self.crash_in_round = crash_in_round
        self.queries = 0

    def get_node_ids(self):
        return list(self.nodes)

    def send_and_receive(self, messages, *, timeout=None):
        replies = []
        for m in messages:
            node = m.metadata.dst_node_id
            ctx = Context(
                run_id=1, node_id=node, state=RecordDict(),
                node_config={"partition-id": self.nodes[node], "num-partitions": self.cfg.num_clients},
                run_config={"fedwsa-config": self.cfg.to_json()},
            )  # fmt: skip
            if m.metadata.message_type == MessageType.QUERY:
                self.queries += 1
                replies.append(query(m, ctx))
                continue
            if m.content["config"][ROUND] == self.crash_in_round:
                raise Crash(f"killed in round {self.crash_in_round}")
            try:
                replies.append(inject(self.faults, _partition_id(ctx, m), train(m, ctx)))
            except Exception as e:  # as Flower does: the error travels back as a reply
                replies.append(Message(Error(code=0, reason=f"{type(e).__name__}: {e}"), reply_to=m))
        return replies[::-1]  # arrival order is not send order
