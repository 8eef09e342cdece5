"""FedNova's normalised averaging: Wang et al. 2020, "Tackling the Objective Inconsistency
Problem in Heterogeneous Federated Optimization", https://arxiv.org/abs/2007.07481, with the
normaliser of SGD with (heavy-ball) momentum. Pure functions over ``{name: array}`` dicts
(float64 inside).

It needs each client's number of local steps ``K_i``; the server computes it
(:func:`fedwsa.train.local_step_count`) rather than trusting a client to report it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

Arrays = Mapping[str, np.ndarray]


def fednova_norm(steps: int, momentum: float) -> float:
    r""":math:`\lVert a_i \rVert_1` of FedNova for ``steps`` = :math:`\tau_i` steps of SGD
    with momentum :math:`\rho`: the local update is :math:`\eta\sum_k a_{i,k} g_{i,k}` with
    :math:`a_{i,k} = (1 - \rho^{\tau_i - k + 1}) / (1 - \rho)`, so

    .. math:: \lVert a_i \rVert_1 = \frac{1}{1-\rho}\Big(\tau_i - \frac{\rho(1-\rho^{\tau_i})}{1-\rho}\Big)

    (``tau_i`` for plain SGD, :math:`\rho = 0`).
    """
    if momentum == 0:
        return float(steps)
    rho = momentum
    return (steps - rho * (1 - rho**steps) / (1 - rho)) / (1 - rho)


def fednova_aggregate(
    x: Arrays, ys: Sequence[Arrays], weights: Sequence[float], norms: Sequence[float]
) -> dict[str, np.ndarray]:
    r"""FedNova's global model: with :math:`p_i` the normalised weights,

    .. math:: x^+ = x - \tau_\text{eff}\sum_i p_i \frac{x - y_i}{\lVert a_i\rVert_1}, \qquad
              \tau_\text{eff} = \sum_i p_i \lVert a_i \rVert_1

    (equal steps everywhere give FedAvg's average). Arrays keep ``x``'s dtypes.
    """
    p = np.asarray(weights, dtype=np.float64)
    p = p / p.sum()
    tau_eff = float(np.dot(p, norms))
    out = {}
    for k, xk in x.items():
        x64 = xk.astype(np.float64)
        step = sum(pi * (x64 - y[k].astype(np.float64)) / ni for pi, y, ni in zip(p, ys, norms, strict=True))
        out[k] = (x64 - tau_eff * step).astype(xk.dtype)
    return out
