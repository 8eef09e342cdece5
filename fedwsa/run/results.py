"""Per-round results written as plain JSON and CSV, rewritten atomically after each round.

Files in the run's output directory:

- ``metrics.json``: ``{"status", "rounds": [row, ...]}``, one row per round (round 0 is
  the initial model), see :data:`COLUMNS`;
- ``metrics.csv``: the same rows;
- ``scopes.json``: ``{"layers": [...], "rounds": [...]}`` with, per round, the global
  model's scope, the target scope (FedWSA) and the mean and std of the client scopes;
- ``model.pt``: the final global ``state_dict``;
- ``checkpoints/``: the server's checkpoints (see :mod:`fedwsa.run.checkpoint`).

``status`` is ``running``, ``finished``, ``failed`` (then ``error`` says why) or
``interrupted`` (stopped by Ctrl-C or SIGTERM: ``signal`` and ``last_round`` say how far it got;
:func:`mark_interrupted`).
"""

from __future__ import annotations

import csv
import io
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

COLUMNS = (
    "round", "test_accuracy", "test_loss", "train_loss", "num_replies", "num_failures",
    "clients", "client_nodes", "failed_clients", "peak_memory_mb", "round_time_s", "elapsed_s",
)  # fmt: skip


PRIVACY_COLUMNS = ("epsilon", "delta", "clipping_norm", "noise_std")  # runs with privacy=... only
LIST_COLUMNS = ("clients", "client_nodes", "failed_clients", "peak_memory_mb")  # space-separated in CSV


def write_synced(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` and flush it to the disk."""
    with path.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def atomic_write(path: Path, data: str | bytes) -> None:
    """Write to ``path.<pid>.tmp``, flush it to disk (fsync), then rename: readers never see
    a half-written file, a power cut leaves the old or the new one, and on failure (disk
    full) the old file stays as it was. Every file of a run is written this way. The temp
    name holds the process id, so two processes writing the same file (two studies restoring
    one folder) each rename a whole file of their own; the last rename wins."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        write_synced(tmp, data.encode() if isinstance(data, str) else data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def scope_stats(scopes: Sequence[np.ndarray]) -> dict[str, list[float]]:
    """Mean and (population) std over clients of each layer's ``mu`` and ``sigma``."""
    s = np.stack([np.asarray(x, dtype=np.float64) for x in scopes])  # (K, L, 2)
    return {
        "client_mu_mean": s[:, :, 0].mean(0).tolist(),
        "client_mu_std": s[:, :, 0].std(0).tolist(),
        "client_sigma_mean": s[:, :, 1].mean(0).tolist(),
        "client_sigma_std": s[:, :, 1].std(0).tolist(),
    }


class RunLog:
    """Collects one row of metrics and one scope record per round and writes them out."""

    def __init__(
        self,
        out_dir: str | Path,
        layers: Sequence[str],
        info: dict[str, Any] | None = None,
        columns: Sequence[str] = COLUMNS,
    ) -> None:
        """``info``: what ``metrics.json`` says of the whole run beside its rounds (the attackers);
        ``columns``: each row's (:data:`COLUMNS`, and :data:`PRIVACY_COLUMNS` with privacy)."""
        self.columns = tuple(columns)
        self.info = dict(info or {})
        self.out = Path(out_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        self.layers = list(layers)
        self.rows: list[dict[str, Any]] = []
        self.scopes: list[dict[str, Any]] = []
        self.start = time.perf_counter()
        self._last = self.start

    def state(self) -> dict[str, Any]:
        """What a checkpoint keeps (see :meth:`restore`)."""
        return {"rows": self.rows, "scopes": self.scopes}

    def restore(self, state: dict[str, Any]) -> None:
        """Continue after a checkpoint: its rows, and the clock where its last row ended."""
        self.rows, self.scopes = list(state["rows"]), list(state["scopes"])
        elapsed = float(self.rows[-1]["elapsed_s"]) if self.rows else 0.0
        self._last = time.perf_counter()
        self.start = self._last - elapsed

    def add_round(self, row: dict[str, Any], scopes: dict[str, Any]) -> dict[str, Any]:
        """Add a round (``row`` without the timing columns) and rewrite the files."""
        now = time.perf_counter()
        full = {c: row.get(c) for c in self.columns}
        full["round_time_s"] = round(now - self._last, 3)
        full["elapsed_s"] = round(now - self.start, 3)
        self._last = now
        self.rows.append(full)
        self.scopes.append({"round": row["round"], **scopes})
        self.write("running")
        return full

    def write(self, status: str, error: str | None = None) -> None:
        """Rewrite the result files; ``metrics.json`` last, so that its status vouches
        for the others (the launcher stops Flower as soon as it reads ``finished``)."""
        doc: dict[str, Any] = {"status": status, **self.info, "rounds": self.rows}
        if error:
            doc["error"] = error
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=self.columns, lineterminator="\n")
        w.writeheader()
        for r in self.rows:
            lists = {
                k: " ".join(map(str, r[k] or [])) for k in ("clients", "failed_clients", "peak_memory_mb")
            }
            w.writerow({**r, **lists})
        atomic_write(self.out / "metrics.csv", buf.getvalue())
        atomic_write(self.out / "scopes.json", json.dumps({"layers": self.layers, "rounds": self.scopes}))
        atomic_write(self.out / "metrics.json", json.dumps(doc, indent=1))

    def finish(self, state_dict: dict[str, torch.Tensor]) -> None:
        buf = io.BytesIO()
        torch.save(state_dict, buf)
        atomic_write(self.out / "model.pt", buf.getvalue())
        self.write("finished")


def mark_interrupted(out_dir: str | Path, signal_name: str) -> bool:
    """After Ctrl-C or SIGTERM stopped a run (and every process of it): a ``metrics.json``
    that still says ``running`` says ``interrupted``, with the signal and the last completed
    round; its rows stay as they are, and ``resume=true`` continues from the last checkpoint.
    Returns whether it changed the file (a run that had finished, failed or not started is
    left alone)."""
    path = Path(out_dir) / "metrics.json"
    doc = RunFolder(out_dir).metrics()
    if doc.get("status") != "running":
        return False
    rows = doc.get("rounds") or []
    doc.update(status="interrupted", signal=signal_name, last_round=rows[-1]["round"] if rows else None)
    atomic_write(path, json.dumps(doc, indent=1))
    return True


# --- the one reader of a run's folder ---------------------------------------------------
ENDED = ("finished", "failed")
"""The statuses of a run that will not run again."""


class RunFolder:
    """What a run left in its folder, read back: ``metrics.json`` (written by :class:`RunLog`),
    ``scopes.json`` and the launcher's ``config.json``. Every reader of a run folder (the
    launcher, the report, the study, the benchmarks) goes through here; a file that is absent,
    half-copied or not JSON reads as empty (status ``absent``), never as an exception.
    Each call reads the file again: a run that is going on changes it."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    def _json(self, name: str) -> Any:
        try:
            return json.loads((self.path / name).read_text())
        except (OSError, ValueError):
            return None

    def metrics(self) -> dict[str, Any]:
        """``metrics.json``: ``status``, ``rounds`` and, for a failed run, ``error``; ``{}`` if unreadable."""
        doc = self._json("metrics.json")
        return doc if isinstance(doc, dict) else {}

    def status(self) -> str:
        """``finished``, ``failed``, ``interrupted``, ``running`` (or killed mid-way), or ``absent``."""
        return str(self.metrics().get("status", "absent"))

    def ended(self) -> bool:
        return self.status() in ENDED

    def rows(self) -> list[dict[str, Any]]:
        """One row per evaluated round (:data:`COLUMNS`); ``[]`` if there are none."""
        rows = self.metrics().get("rounds", [])
        return list(rows) if isinstance(rows, list) else []

    def error(self) -> str:
        """Why a failed run stopped ('' if it did not)."""
        return str(self.metrics().get("error", "") or "")

    def record(self) -> dict[str, Any]:
        """``config.json``: the resolved config (``config``), code version, data source, machine."""
        doc = self._json("config.json")
        return doc if isinstance(doc, dict) else {}

    def config(self) -> dict[str, Any]:
        """The run's resolved config as a plain dict (``{}`` if ``config.json`` is unreadable)."""
        cfg = self.record().get("config", {})
        return cfg if isinstance(cfg, dict) else {}

    def scopes(self) -> dict[str, Any] | None:
        """``scopes.json`` (``layers`` and one record per round), or None."""
        doc = self._json("scopes.json")
        return doc if isinstance(doc, dict) else None
