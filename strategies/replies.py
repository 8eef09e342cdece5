"""The round loop's check of the clients' replies: decode each reply once, keep the sound
ones, say why each other sampled client has no usable reply; then optional clipping.

A reply is used only if it holds exactly an ``ArrayRecord`` named ``arrays`` with the
model's parameter names and shapes, all finite, a ``ConfigRecord`` named ``where`` (the Ray
node, recorded only), and a ``MetricRecord`` named ``metrics`` with exactly the keys of
``fedwsa.run.wire.encode_reply``, whose example count is the size
of the client's partition as the server computes it (``fedwsa.run.wire.check_reply``).
What a client could misreport and the server can compute (its scope, its partition) is
never read from the reply.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from flwr.app import Array, ArrayRecord, Message

from fedwsa import attacks
from fedwsa.attacks import choose_attackers
from fedwsa.robust import clip_updates
from fedwsa.run.config import AttackConfig, ExperimentConfig
from fedwsa.run.wire import ARRAYS, METRICS, RAY_NODE, WHERE, check_reply


@dataclass(frozen=True)
class Update:
    """One client's sound reply, decoded once."""

    partition_id: int
    message: Message
    arrays: dict[str, np.ndarray]
    num_examples: int
    train_loss: float
    peak_memory_mb: float
    node: str  # where it trained: the Ray node id in simulation, else the server's node id


def _reason(reply: Message) -> str:
    """An error reply's reason on one line: the exception's own message where Flower wraps
    it (``... Message: <text>``), at most 200 characters."""
    text = str(reply.error.reason)
    if "Message: " in text:
        text = text.rsplit("Message: ", 1)[1]
    text = " ".join(text.replace("\\n", " ").split()).rstrip("'>")
    if not text:  # found by tests/test_fuzz.py: an error without a message logged as nothing
        return f"an error reply without a message (code {reply.error.code})"
    return text if len(text) <= 200 else text[:197] + "..."


def _screen_one(
    reply: Message, partition_id: int, shapes: Mapping[str, tuple[int, ...]], num_examples: int
) -> Update | str:
    if reply.has_error():
        return _reason(reply)
    content = reply.content
    records = {k: type(v).__name__ for k, v in content.items()}
    want = {ARRAYS: "ArrayRecord", METRICS: "MetricRecord", WHERE: "ConfigRecord"}
    if records != want:
        return f"rejected by the server: expected the records {want}, got {records}"
    where = dict(content[WHERE])  # type: ignore[arg-type]
    ray_node = where.get(RAY_NODE)
    if set(where) != {RAY_NODE} or not isinstance(ray_node, str) or len(ray_node) > 64:
        return f"rejected by the server: {WHERE} must hold {RAY_NODE} (a short string), got {sorted(where)}"
    arrays = {k: v.numpy() for k, v in content[ARRAYS].items()}  # type: ignore[union-attr]
    metrics = check_reply(arrays, content[METRICS], dict(shapes), num_examples)
    if isinstance(metrics, str):
        return f"rejected by the server: {metrics}"
    node = ray_node or str(reply.metadata.src_node_id)
    return Update(
        partition_id, reply, arrays, metrics.num_examples, metrics.train_loss, metrics.peak_memory_mb, node
    )


def screen(
    replies: Sequence[Message],
    partition_of: Callable[[Message], int],
    shapes: Mapping[str, tuple[int, ...]],
    sizes: Sequence[int],
) -> tuple[list[Update], dict[int, str]]:
    """The sound replies as :class:`Update` s, and for each other one its partition id and
    why it is not used. ``partition_of`` gives a reply's partition id from the server's own
    record of whom it asked (-1: none); ``sizes`` are the partitions' sizes."""
    updates: list[Update] = []
    rejected: dict[int, str] = {}
    for reply in replies:
        pid = partition_of(reply)
        checked = _screen_one(reply, pid, shapes, sizes[pid] if 0 <= pid < len(sizes) else -1)
        if isinstance(checked, Update):
            updates.append(checked)
        else:
            rejected[pid] = checked
    return updates, rejected


def clip(
    updates: list[Update], base: dict[str, np.ndarray], factor: float
) -> tuple[list[Update], list[float]]:
    """Clip each update to ``factor`` x the round's median update norm
    (``fedwsa.robust.clip_updates``); a clipped reply's message carries the clipped
    parameters too, so all that follows (aggregation, FedWSA's scopes) sees them."""
    clipped, scales = clip_updates([u.arrays for u in updates], base, factor)
    out = []
    for u, new, scale in zip(updates, clipped, scales, strict=True):
        if scale < 1.0:
            u.message.content[ARRAYS] = ArrayRecord(
                {k: Array(np.ascontiguousarray(v)) for k, v in new.items()}
            )
            u = dataclasses.replace(u, arrays=new)
        out.append(u)
    return out, scales


def attackers(cfg: ExperimentConfig) -> list[int]:
    """The partitions that attack the model (``attack=`` but ``none``; ``label_flip``'s attack
    their own data instead: ``fedwsa/run/local_round.py``)."""
    a = cfg.attack
    if a.kind == "none":
        return []
    return choose_attackers(cfg.num_clients, a.clients, cfg.seeds.partition)


def attack(
    updates: list[Update], global_model: ArrayRecord, ids: Sequence[int], a: AttackConfig, rnd: int,
    seed: int, names: Sequence[str] = (),
) -> list[Update]:  # fmt: skip
    """The attackers' replies replaced as ``a.kind`` says (``fedwsa.attacks``); like clipping,
    the message carries the new parameters, so all that follows sees them."""
    if a.kind in ("none", "label_flip"):
        return updates
    x = {k: v.numpy() for k, v in global_model.items()}
    bad = [u for u in updates if u.partition_id in ids]
    if a.kind == "alie" and bad:
        z = attacks.alie_z(len(updates), len(bad))
        forged = attacks.alie(x, [u.arrays for u in updates], z)
    out = []
    for u in updates:
        if u.partition_id not in ids:
            out.append(u)
            continue
        if a.kind == "sign_flip":
            new = attacks.sign_flip(x, u.arrays)
        elif a.kind == "scale":
            new = attacks.scale(x, u.arrays, a.scale)
        elif a.kind == "noise":
            new = attacks.noise(
                x, u.arrays, a.noise_std, np.random.default_rng([seed, rnd, u.partition_id, 0x0015E])
            )
        elif a.kind == "alie":
            new = dict(forged)
        else:  # scope
            new = attacks.scope_shift(u.arrays, names, a.scale)
        u.message.content[ARRAYS] = ArrayRecord({k: Array(np.ascontiguousarray(v)) for k, v in new.items()})
        out.append(dataclasses.replace(u, arrays=new))
    return out


def beyond_bound(
    updates: list[Update], base: dict[str, np.ndarray], bound: float
) -> tuple[list[Update], dict[int, str]]:
    """The updates within L2 norm ``bound`` of ``base``, and why each other was rejected:
    a client that was to clip its own update (``privacy=client_fixed``) is checked, not
    trusted. The slack covers float32 rounding of ``base + clipped update`` (about 6e-8 of
    the model's norm), not a bigger update."""
    slack = 1e-6 * (
        float(np.sqrt(sum(np.sum(np.square(v, dtype=np.float64)) for v in base.values()))) + bound
    )
    kept, rejected = [], {}
    for u in updates:
        norm = float(
            np.sqrt(sum(np.sum(np.square(u.arrays[k] - v, dtype=np.float64)) for k, v in base.items()))
        )
        if norm > bound + slack:
            rejected[u.partition_id] = f"its update's norm {norm:.6g} exceeds privacy.clipping_norm={bound:g}"
        else:
            kept.append(u)
    return kept, rejected
