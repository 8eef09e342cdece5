"""Pure, seeded partitioners of a label vector into client index sets.

``dirichlet`` and ``pathological`` follow Flower's NIID-Bench baseline
(``baselines/niid_bench/niid_bench/dataset_preparation.py``; Li et al. 2022,
https://arxiv.org/abs/2102.02079). Each function returns one sorted ``int64`` index
array per client and depends only on its arguments.
"""

from __future__ import annotations

import numpy as np

PARTITIONS: tuple[str, ...] = ("iid", "dirichlet", "pathological")


class PartitionError(ValueError):
    """The requested split is impossible for these labels and settings."""


def iid(num_samples: int, num_clients: int, seed: int) -> list[np.ndarray]:
    """Shuffle, then cut into ``num_clients`` parts whose sizes differ by at most one."""
    if num_clients > num_samples:
        raise PartitionError(f"{num_clients} clients but only {num_samples} samples")
    perm = np.random.default_rng(seed).permutation(num_samples)
    return [np.sort(p).astype(np.int64) for p in np.array_split(perm, num_clients)]


def dirichlet(
    labels: np.ndarray,
    num_clients: int,
    alpha: float,
    seed: int,
    min_size: int = 10,
    max_retries: int = 1000,
) -> list[np.ndarray]:
    """Per-label Dirichlet(alpha) split with NIID-Bench's balancing and retry.

    For every label ``k``: shuffle its samples, draw ``p ~ Dir(alpha * 1)``, zero ``p_j``
    for clients that already hold at least ``N / num_clients`` samples (balancing),
    renormalise, and cut the label's samples at the cumulative proportions. Repeat the
    whole draw until every client holds at least ``min_size`` samples, at most
    ``max_retries`` times. (Where balancing zeroes every client, which NIID-Bench turns
    into NaNs, the unbalanced proportions are used.)
    """
    labels = np.asarray(labels)
    n = labels.shape[0]
    if num_clients * min_size > n:
        raise PartitionError(f"{num_clients} clients x min_size {min_size} exceeds the {n} training samples")
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    for _ in range(max_retries):
        parts: list[list[int]] = [[] for _ in range(num_clients)]
        for k in classes:
            idx_k = np.flatnonzero(labels == k)
            rng.shuffle(idx_k)
            p = rng.dirichlet(np.repeat(alpha, num_clients))
            balanced = p * np.array([len(q) < n / num_clients for q in parts])
            p = balanced if balanced.sum() > 0 else p
            cuts = (np.cumsum(p / p.sum()) * len(idx_k)).astype(int)[:-1]
            for j, chunk in enumerate(np.split(idx_k, cuts)):
                parts[j].extend(chunk.tolist())
        if min(len(q) for q in parts) >= min_size:
            return [np.sort(np.asarray(q, dtype=np.int64)) for q in parts]
    raise PartitionError(
        f"Dirichlet(alpha={alpha}) gave some client fewer than {min_size} samples in "
        f"{max_retries} tries; raise alpha, lower num_clients or lower min_partition_size"
    )


def pathological(labels: np.ndarray, num_clients: int, labels_per_client: int, seed: int) -> list[np.ndarray]:
    """NIID-Bench's ``#C = labels_per_client`` split: each client holds that many labels.

    Client ``i`` gets label ``i mod K`` and ``C - 1`` further distinct labels drawn at
    random; each label's samples are shuffled and split evenly among the clients that
    hold it. Labels that no client holds are left out (possible when ``N * C < K``).
    """
    labels = np.asarray(labels)
    classes = np.unique(labels)
    k_count = len(classes)
    if not 1 <= labels_per_client <= k_count:
        raise PartitionError(f"labels_per_client must be in [1, {k_count}], got {labels_per_client}")
    rng = np.random.default_rng(seed)
    holders: list[list[int]] = [[] for _ in range(k_count)]
    for i in range(num_clients):
        chosen = [i % k_count]
        while len(chosen) < labels_per_client:
            c = int(rng.integers(k_count))
            if c not in chosen:
                chosen.append(c)
        for c in chosen:
            holders[c].append(i)
    parts: list[list[int]] = [[] for _ in range(num_clients)]
    for c, cls in enumerate(classes):
        if not holders[c]:
            continue
        idx = np.flatnonzero(labels == cls)
        rng.shuffle(idx)
        for client, chunk in zip(holders[c], np.array_split(idx, len(holders[c])), strict=True):
            parts[client].extend(chunk.tolist())
    empty = [i for i, q in enumerate(parts) if not q]
    if empty:
        raise PartitionError(f"clients {empty[:5]} received no samples; lower num_clients")
    return [np.sort(np.asarray(q, dtype=np.int64)) for q in parts]


def partition(
    labels: np.ndarray,
    kind: str,
    num_clients: int,
    seed: int,
    *,
    alpha: float = 0.5,
    labels_per_client: int = 2,
    min_size: int = 10,
    max_retries: int = 1000,
) -> list[np.ndarray]:
    """Dispatch to :func:`iid`, :func:`dirichlet` or :func:`pathological` by name."""
    if kind == "iid":
        return iid(len(labels), num_clients, seed)
    if kind == "dirichlet":
        return dirichlet(labels, num_clients, alpha, seed, min_size, max_retries)
    if kind == "pathological":
        return pathological(labels, num_clients, labels_per_client, seed)
    raise PartitionError(f"unknown partition {kind!r}; expected one of {', '.join(PARTITIONS)}")
