"""Server checkpoints: written atomically with a checksum, read back with a fallback.

A checkpoint is everything the rest of a run depends on after round ``r``: the global
parameters, the strategy's state (FedWSA's target scope), the client sampler's random
generator, and the results so far. Files are ``checkpoints/round-XXXXX.ckpt`` in the
run's output directory; each is one header line ``fedwsa-checkpoint 1 <sha256>`` and a
``torch.save`` payload (tensors and plain Python values only, so it loads with
``weights_only=True``). The newest :data:`KEEP` files are kept, so a corrupted newest
file falls back to the one before.
"""

from __future__ import annotations

import hashlib
import io
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from fedwsa.run.results import atomic_write

MAGIC = b"fedwsa-checkpoint 1 "
KEEP = 2
_NAME = re.compile(r"round-(\d{5})\.ckpt")


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, truncated, corrupted or of another run."""


@dataclass
class Checkpoint:
    """The state after ``round``; ``strategy``, ``sampler`` and ``log`` are plain values."""

    round: int
    params: dict[str, torch.Tensor]
    config: str  # the experiment JSON, to refuse resuming another experiment
    strategy: dict[str, Any] = field(default_factory=dict)
    sampler: dict[str, Any] = field(default_factory=dict)
    log: dict[str, Any] = field(default_factory=dict)


def folder(out_dir: str | Path) -> Path:
    return Path(out_dir) / "checkpoints"


def _files(out_dir: str | Path) -> list[tuple[int, Path]]:
    """(round, path) of the checkpoint files, newest first."""
    d = folder(out_dir)
    if not d.is_dir():
        return []
    return sorted(((int(m.group(1)), p) for p in d.iterdir() if (m := _NAME.fullmatch(p.name))), reverse=True)


def encode(ckpt: Checkpoint) -> bytes:
    buf = io.BytesIO()
    torch.save(
        {"round": ckpt.round, "params": ckpt.params, "config": ckpt.config,
         "strategy": ckpt.strategy, "sampler": ckpt.sampler, "log": ckpt.log},
        buf,
    )  # fmt: skip
    payload = buf.getvalue()
    return MAGIC + hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload


def decode(data: bytes, name: str = "checkpoint") -> Checkpoint:
    """Parse and verify; :class:`CheckpointError` says what is wrong."""
    head, sep, payload = data.partition(b"\n")
    if not sep or not head.startswith(MAGIC):
        raise CheckpointError(f"{name} is not a fedwsa checkpoint (bad header)")
    if hashlib.sha256(payload).hexdigest().encode() != head[len(MAGIC) :]:
        raise CheckpointError(f"{name} is truncated or corrupted (checksum mismatch)")
    try:
        d = torch.load(io.BytesIO(payload), weights_only=True)
        return Checkpoint(d["round"], d["params"], d["config"], d["strategy"], d["sampler"], d["log"])
    except Exception as e:  # a payload that hashes right but does not load: another version
        raise CheckpointError(f"{name} does not load ({type(e).__name__}: {e})") from e


def save(out_dir: str | Path, ckpt: Checkpoint) -> Path:
    """Write ``round-XXXXX.ckpt`` atomically (temporary file, fsync, rename); keep the newest
    :data:`KEEP`. On failure (disk full) nothing already written is touched."""
    d = folder(out_dir)
    d.mkdir(parents=True, exist_ok=True)
    path = d / f"round-{ckpt.round:05d}.ckpt"
    atomic_write(path, encode(ckpt))
    for _, old in _files(out_dir)[KEEP:]:
        old.unlink(missing_ok=True)
    return path


def load_latest(out_dir: str | Path, config: str | None = None) -> tuple[Checkpoint | None, list[str]]:
    """The newest checkpoint that verifies, and a message for each newer one that did not.

    With ``config``, a checkpoint of another experiment is an error, not a fallback.
    """
    problems: list[str] = []
    for _, path in _files(out_dir):
        try:
            ckpt = decode(path.read_bytes(), str(path))
        except (CheckpointError, OSError) as e:
            problems.append(str(e))
            continue
        if config is not None and ckpt.config != config:
            raise CheckpointError(
                f"{path} belongs to a run with other settings; resume with the same config "
                "or use another output directory"
            )
        return ckpt, problems
    return None, problems
