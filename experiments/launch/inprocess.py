"""``engine=inprocess``: the whole experiment in this one process, without Flower's
processes or Ray: the real round loop (``strategies.rounds``) on a Grid whose nodes call
the real ClientApp handlers (``clients.client_app``) one after the other.

Same config, same seeds, same results as the simulation (the tests compare them bit for
bit). For debugging (pdb and profilers see everything), for a GPU machine without Ray,
and for short runs where Flower's start-up (~14 s) dominates; clients train one at a time.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterable
from contextlib import redirect_stdout
from functools import partial

from flwr.app import Context, Error, Message, MessageType, RecordDict
from flwr.clientapp.typing import Mod
from flwr.supercore.task_identity import TaskIdentity

from clients.client_app import MODS, query, train
from experiments.launch.processes import LaunchError, LineWriter, ProgressView, check_interrupted
from fedwsa.run.config import ExperimentConfig
from fedwsa.run.wire import RUN_CONFIG_KEY
from strategies.rounds import RunFailed, run


class InProcessGrid:
    """A Flower Grid in process: the simulation's pool of ``cfg.node_pool`` virtual nodes
    (ids ``1000 + 7 i``), each train message naming its partition; a ClientApp that raises
    becomes an error reply, as in Flower."""

    runs_clients_on_pull = True  # each pull trains a client: the round loop never waits for it

    def __init__(self, cfg: ExperimentConfig) -> None:
        self.cfg = cfg
        self.run_config = cfg.to_json()  # once: serialising the config per message cost ~0.4 ms a client
        self.nodes = {1000 + 7 * i: i for i in range(cfg.node_pool)}  # node id -> index
        self._pending: dict[str, Message] = {}  # pushed, not yet handled, by message id

    def get_node_ids(self) -> Iterable[int]:
        return list(self.nodes)

    def context(self, node: int) -> Context:
        return Context(
            run_id=1, node_id=node, state=RecordDict(),
            node_config={"partition-id": self.nodes[node], "num-partitions": self.cfg.num_clients},
            run_config={RUN_CONFIG_KEY: self.run_config},
        )  # fmt: skip

    def handle(self, m: Message) -> Message:
        """One message through the ClientApp handler it is for."""
        check_interrupted()
        ctx = self.context(m.metadata.dst_node_id)
        if m.metadata.message_type == MessageType.QUERY:
            return query(m, ctx)
        call: Callable[[Message, Context], Message] = train
        for mod in reversed(MODS):  # as Flower's ClientApp applies them
            call = partial(_through, mod, call)
        try:
            return call(m, ctx)
        except Exception as e:  # as Flower does: the error travels back as a reply
            return Message(Error(code=0, reason=f"{type(e).__name__}: {e}"), reply_to=m)

    def push_messages(self, messages: Iterable[Message]) -> list[str]:
        ids = []
        for m in messages:
            m.metadata.__dict__["_message_id"] = uuid.uuid4().hex  # as Flower's grids do
            self._pending[m.metadata.message_id] = m
            ids.append(m.metadata.message_id)
        return ids

    def pull_messages(self, message_ids: Iterable[str]) -> list[Message]:
        """Handle one pushed message of ``message_ids`` and return its reply: the round loop
        sees the replies come in one by one, as from Flower."""
        for mid in message_ids:
            if mid in self._pending:
                return [self.handle(self._pending.pop(mid))]
        return []

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> list[Message]:
        return [self.handle(m) for m in messages]


def _through(mod: Mod, call_next: Callable[[Message, Context], Message], m: Message, c: Context) -> Message:
    return mod(m, c, call_next)


def run_inprocess(cfg: ExperimentConfig) -> None:
    """Run ``cfg`` here, in this process; results land in ``cfg.out_dir``."""
    # Flower 1.42 stamps every Message with the running task's identity, which its own
    # processes set; here there is one task, this process.
    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 1, 0
    logging.getLogger("flwr").setLevel(logging.INFO if cfg.verbose else logging.WARNING)  # as the ServerApp
    view = ProgressView()  # progress lines as a live line on a terminal, as the launcher shows them
    try:
        with redirect_stdout(LineWriter(view.show)):
            run(InProcessGrid(cfg), cfg, assign=True)  # type: ignore[arg-type]
    except RunFailed as e:  # as the simulation reports it: one line, exit 1 (metrics.json says failed)
        raise LaunchError(f"the run failed: {e}") from None
