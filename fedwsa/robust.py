"""Optional defence against outlier updates: clip each client's update to a multiple of
the round's median update norm (``update_clip`` in the config; 0 turns it off).

An update is ``w_k - w_global`` over all floating-point parameters; with
``m = median_k ||w_k - w_global||`` and ``c = factor * m``, client ``k`` is replaced by
``w_global + (w_k - w_global) * min(1, c / ||w_k - w_global||)``. The median is robust to
a minority of outliers, so one huge update cannot raise its own threshold.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def update_norm(client: dict[str, np.ndarray], base: dict[str, np.ndarray]) -> float:
    """L2 norm of ``client - base`` over the floating-point arrays."""
    sq = sum(
        float(np.sum((client[k].astype(np.float64) - base[k].astype(np.float64)) ** 2))
        for k in base
        if np.issubdtype(base[k].dtype, np.floating)
    )
    return float(np.sqrt(sq))


def clip_updates(
    clients: Sequence[dict[str, np.ndarray]], base: dict[str, np.ndarray], factor: float
) -> tuple[list[dict[str, np.ndarray]], list[float]]:
    """Clipped copies of ``clients`` and each one's scale (1.0 = untouched)."""
    norms = [update_norm(c, base) for c in clients]
    limit = factor * float(np.median(norms)) if norms else 0.0
    out, scales = [], []
    for c, n in zip(clients, norms, strict=True):
        scale = 1.0 if n <= limit or n == 0 else limit / n
        scales.append(scale)
        if scale == 1.0:
            out.append(c)
            continue
        out.append({
            k: (base[k] + (v - base[k]) * scale).astype(v.dtype) if np.issubdtype(v.dtype, np.floating) else v
            for k, v in c.items()
        })  # fmt: skip
    return out, scales
