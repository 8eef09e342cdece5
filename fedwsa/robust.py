"""Defences against outlier clients: clipping each update to a multiple of the round's median
update norm (``update_clip`` in the config; 0 turns it off), and robust statistics of the
clients' scopes for FedWSA's target (``strategy.fusion=median|trimmed``).

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


def trimmed_mean(values: np.ndarray, trim: float) -> np.ndarray:
    """Mean over axis 0 without the ``floor(trim * K)`` smallest and largest of the ``K``
    values at each position (``trim`` in [0, 0.5); scipy's ``trim_mean``)."""
    if not 0 <= trim < 0.5:
        raise ValueError(f"trim must be in [0, 0.5), got {trim}")
    k = values.shape[0]
    cut = int(trim * k)
    return np.sort(values, axis=0)[cut : k - cut].mean(axis=0)


def robust_scope(scopes: np.ndarray, method: str, trim: float = 0.2) -> np.ndarray:
    """The clients' ``(K, L, 2)`` scopes fused per layer and per moment, unweighted, so that a
    minority cannot move the result far: ``median`` (fewer than half the clients cannot move
    it outside the honest clients' range) or ``trimmed`` (the trimmed mean)."""
    if method == "median":
        return np.median(scopes, axis=0)
    if method == "trimmed":
        return trimmed_mean(scopes, trim)
    raise ValueError(f"unknown robust fusion {method!r}; expected median or trimmed")
