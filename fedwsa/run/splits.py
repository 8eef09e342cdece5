"""Client splits as files: the format NIID-Bench writes (``{"0": [indices], "1": [...]}``,
client ids as strings), so a split made by another tool (NIID-Bench, FL-bench,
flwr-datasets) can be replayed exactly, and ours can be replayed by others.

An optional ``"_meta"`` entry names the dataset and its training-set size
(``{"dataset": "fmnist", "num_samples": 60000}``); :func:`write_split` always writes it.
Indices refer to the training set as the experiment sees it (with ``validation > 0``,
what remains after the hold-out).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from fedwsa.partition import PartitionError
from fedwsa.run.results import atomic_write

META = "_meta"


def read_split(
    path: str | Path, num_clients: int, num_samples: int, dataset: str
) -> tuple[list[np.ndarray], str]:
    """The clients' index arrays from ``path``, and a one-line note on overlapping and
    unassigned samples (allowed). ``PartitionError`` (one line) names what is wrong."""
    where = f"partition.path: {path}"
    try:
        doc = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise PartitionError(f"{where}: no such file") from None
    except (OSError, ValueError) as e:
        raise PartitionError(f"{where}: not a JSON split file ({type(e).__name__}: {str(e)[:80]})") from None
    if not isinstance(doc, dict):
        raise PartitionError(f"{where}: expected an object mapping client ids to index lists")
    meta = doc.pop(META, {})
    if not isinstance(meta, dict):
        raise PartitionError(f"{where}: {META} must be an object")
    if "dataset" in meta and meta["dataset"] != dataset:
        raise PartitionError(
            f"{where}: a split of {meta['dataset']!r}, the experiment's dataset is {dataset!r}"
        )
    if "num_samples" in meta and meta["num_samples"] != num_samples:
        raise PartitionError(
            f"{where}: made for {meta['num_samples']} training samples, the experiment has {num_samples}"
        )
    bad_ids = [k for k in doc if not (isinstance(k, str) and k.isdigit())]
    if bad_ids:
        raise PartitionError(f"{where}: client ids must be 0, 1, ...; got {bad_ids[0]!r}")
    if sorted(int(k) for k in doc) != list(range(num_clients)):
        raise PartitionError(
            f"{where}: holds {len(doc)} clients (ids {_span(doc)}), num_clients is {num_clients}"
        )
    parts = []
    for cid in range(num_clients):
        values = doc[str(cid)]
        if not isinstance(values, list) or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in values
        ):
            raise PartitionError(f"{where}: client {cid}'s indices must be a list of integers")
        idx = np.asarray(values, dtype=np.int64)
        if idx.size == 0:
            raise PartitionError(f"{where}: client {cid} has no samples")
        if idx.min() < 0 or idx.max() >= num_samples:
            bad = int(idx[(idx < 0) | (idx >= num_samples)][0])
            raise PartitionError(f"{where}: client {cid} has index {bad}, outside [0, {num_samples})")
        parts.append(np.sort(idx))
    counts = np.bincount(np.concatenate(parts), minlength=num_samples)
    note = (
        f"split file {path}: {num_clients} clients, {int((counts > 1).sum())} samples in more than "
        f"one client, {int((counts == 0).sum())} of {num_samples} in none"
    )
    return parts, note


def _span(doc: dict[str, object]) -> str:
    ids = sorted(int(k) for k in doc)
    return f"{ids[0]}-{ids[-1]}" if ids else "none"


def write_split(path: str | Path, parts: Sequence[np.ndarray], dataset: str, num_samples: int) -> None:
    """Write ``parts`` in the format :func:`read_split` reads (atomically)."""
    doc: dict[str, object] = {META: {"dataset": dataset, "num_samples": num_samples}}
    doc.update({str(i): [int(v) for v in p] for i, p in enumerate(parts)})
    atomic_write(Path(path), json.dumps(doc))
