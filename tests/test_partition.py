"""Partitioners: sizes, disjointness, coverage, seed determinism, label skew."""

import numpy as np
import pytest

from fedwsa.partition import PartitionError, dirichlet, iid, partition, pathological

LABELS = np.repeat(np.arange(10), 200)  # 2,000 samples, 10 balanced labels


def _check_disjoint(parts, n, full=True):
    allidx = np.concatenate(parts)
    assert len(allidx) == len(np.unique(allidx))
    assert allidx.min() >= 0 and allidx.max() < n
    if full:
        assert len(allidx) == n


def _labels_per_client(parts, frac=0.05):
    """Mean number of labels holding more than `frac` of a client's samples."""
    return np.mean([np.sum(np.bincount(LABELS[p], minlength=10) > frac * len(p)) for p in parts])


def test_iid_sizes_and_coverage():
    parts = iid(103, 10, seed=1)
    assert sorted(len(p) for p in parts) == [10] * 7 + [11] * 3
    _check_disjoint(parts, 103)


@pytest.mark.parametrize("kind", ["iid", "dirichlet", "pathological"])
def test_seed_determinism(kind):
    a = partition(LABELS, kind, 10, seed=3, alpha=0.3)
    b = partition(LABELS, kind, 10, seed=3, alpha=0.3)
    c = partition(LABELS, kind, 10, seed=4, alpha=0.3)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c, strict=True))


def test_dirichlet_min_size_coverage_and_skew():
    skewed = dirichlet(LABELS, 10, alpha=0.1, seed=0, min_size=20)
    assert min(len(p) for p in skewed) >= 20
    _check_disjoint(skewed, len(LABELS))
    flat = dirichlet(LABELS, 10, alpha=100.0, seed=0)
    _check_disjoint(flat, len(LABELS))
    assert _labels_per_client(skewed) < 5 < _labels_per_client(flat)


def test_dirichlet_balancing_caps_client_size():
    # balancing stops giving data to clients that already hold N / clients samples,
    # so no client can exceed that by more than one label's worth (200 here)
    parts = dirichlet(LABELS, 10, alpha=0.05, seed=0)
    assert max(len(p) for p in parts) < len(LABELS) / 10 + 200


def test_dirichlet_impossible_raises():
    with pytest.raises(PartitionError, match="min_size"):
        dirichlet(LABELS, 300, alpha=0.5, seed=0, min_size=10)
    with pytest.raises(PartitionError, match="tries"):
        dirichlet(LABELS, 150, alpha=0.01, seed=0, min_size=12, max_retries=3)


def test_pathological_labels_per_client():
    parts = pathological(LABELS, 10, labels_per_client=2, seed=0)
    for i, p in enumerate(parts):
        held = set(LABELS[p].tolist())
        assert len(held) == 2 and i % 10 in held
    _check_disjoint(parts, len(LABELS), full=False)
    with pytest.raises(PartitionError):
        pathological(LABELS, 10, labels_per_client=11, seed=0)


def test_unknown_kind():
    with pytest.raises(PartitionError, match="unknown partition"):
        partition(LABELS, "zipf", 10, seed=0)
