"""Synthetic(alpha, beta): the FedProx paper's federated data (Li et al. 2020, "Federated
Optimization in Heterogeneous Networks", Section 5.1), generated per client from a seed.

Client k draws ``u_k ~ N(0, alpha)``, ``B_k ~ N(0, beta)``; its model ``W_k ~ N(u_k, 1)``
(60 x 10) and ``b_k ~ N(u_k, 1)`` (10); its inputs ``x ~ N(v_k, Sigma)`` with
``v_k ~ N(B_k, 1)`` (60) and ``Sigma`` diagonal, ``Sigma_jj = j^-1.2``; its labels
``y = argmax(softmax(W_k^T x + b_k))``. alpha sets how much the clients' models differ,
beta how much their inputs do; as in FedProx's generator (``np.random.normal(0, alpha)``),
alpha and beta are standard deviations, the other 1s too, ``Sigma`` holds variances. Client
sizes follow FedProx's generator, ``int(lognormal(4, 2)) + 50``, capped at
:data:`MAX_SIZE` so that no client's tail draw dominates a run of 100,000 clients.

Nothing is stored: every client's data is a pure function of ``(seed, k)``, so any
number of clients costs memory only for the clients training now. The central
evaluation set is :data:`EVAL_PER_CLIENT` fresh samples from each of the first
``min(num_clients, EVAL_CLIENTS)`` clients' distributions (another stream of the same
seed; ``validation`` draws yet another), so the global model is scored on the
clients' own mixture.
"""

from __future__ import annotations

import numpy as np

FEATURES, CLASSES = 60, 10
MAX_SIZE = 1000
EVAL_CLIENTS, EVAL_PER_CLIENT = 100, 100
_TRAIN, _TEST, _VALIDATION = 0, 1, 2  # streams of a client's samples
_SIGMA = np.arange(1, FEATURES + 1, dtype=np.float64) ** -1.2  # diagonal of Sigma (variances)


def client_sizes(num_clients: int, seed: int) -> np.ndarray:
    """Each client's number of training samples (int64)."""
    rng = np.random.default_rng([seed, 0x5EED])
    return np.minimum(rng.lognormal(4, 2, num_clients).astype(np.int64) + 50, MAX_SIZE)


def _client_model(k: int, alpha: float, beta: float, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng([seed, k, 0])
    u = rng.normal(0, alpha)
    b_mean = rng.normal(0, beta)
    w = rng.normal(u, 1, (FEATURES, CLASSES))
    b = rng.normal(u, 1, CLASSES)
    v = rng.normal(b_mean, 1, FEATURES)
    return w, b, v


def client_samples(
    k: int, n: int, alpha: float, beta: float, seed: int, stream: int = _TRAIN
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` samples of client ``k``'s distribution: x (n, 60) float32, y (n,) int64."""
    w, b, v = _client_model(k, alpha, beta, seed)
    rng = np.random.default_rng([seed, k, 1 + stream])
    x = v + rng.standard_normal((n, FEATURES)) * np.sqrt(_SIGMA)
    y = np.argmax(x @ w + b, axis=1)  # softmax is monotone: its argmax is the logits'
    return x.astype(np.float32), y.astype(np.int64)


def client_train(
    k: int, num_clients: int, alpha: float, beta: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Client ``k``'s training set (its size from :func:`client_sizes`)."""
    n = int(client_sizes(num_clients, seed)[k])
    return client_samples(k, n, alpha, beta, seed)


def eval_set(
    num_clients: int, alpha: float, beta: float, seed: int, validation: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """The central test (or validation) set: fresh samples of the first clients' distributions."""
    stream = _VALIDATION if validation else _TEST
    parts = [
        client_samples(k, EVAL_PER_CLIENT, alpha, beta, seed, stream)
        for k in range(min(num_clients, EVAL_CLIENTS))
    ]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
