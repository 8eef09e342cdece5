"""``flower_sweep``: Flower's own per-node message sweep, timed alone at each client count
(why a round costs more at 10,000 clients; see ``docs/PERFORMANCE.md``)."""

from __future__ import annotations

import argparse
import time
from typing import Any

from experiments.bench.probes import median, table


def bench_flower_sweep(args: argparse.Namespace) -> dict[str, Any]:
    """Flower's Simulation Engine, alone: registering N virtual nodes, and one sweep of the
    thread that every 0.1 s asks the link state for each node's pending messages
    (``add_messages_to_queue`` in ``flwr/server/superlink/fleet/vce/vce_api.py``)."""
    from flwr.server.superlink.fleet.vce.vce_api import _register_nodes
    from flwr.server.superlink.linkstate import LinkStateFactory
    from flwr.supercore.constant import FLWR_IN_MEMORY_DB_NAME
    from flwr.supercore.object_store import ObjectStoreFactory
    from flwr.superlink.federation import NoOpFederationManager

    rows = []
    for n in args.clients:
        factory = LinkStateFactory(FLWR_IN_MEMORY_DB_NAME, NoOpFederationManager(), ObjectStoreFactory())
        t = time.perf_counter()
        nodes = _register_nodes(n, factory)
        register = time.perf_counter() - t
        state = factory.state()
        sweeps = []
        for _ in range(args.repeat):
            t = time.perf_counter()
            for node_id in nodes:  # what add_messages_to_queue does every 0.1 s
                state.get_message_ins(node_id=node_id, limit=1)
            sweeps.append(time.perf_counter() - t)
        sweep = median(sweeps)
        rows.append({"nodes": n, "register_s": register, "sweep_ms": 1000 * sweep,
                     "share_of_a_core": sweep / (sweep + 0.1)})  # fmt: skip
    print(table(rows, list(rows[0])))
    return {"repeat": args.repeat, "rows": rows}
