"""The math of NIID-Bench's two other baselines: SCAFFOLD's control variates and FedNova's
normalised averaging. Pure functions over ``{name: array}`` dicts (float64 inside).

- SCAFFOLD: Karimireddy et al. 2020, "SCAFFOLD: Stochastic Controlled Averaging for
  Federated Learning", https://arxiv.org/abs/1910.06378, option II of its control update.
- FedNova: Wang et al. 2020, "Tackling the Objective Inconsistency Problem in
  Heterogeneous Federated Optimization", https://arxiv.org/abs/2007.07481, with the
  normaliser of SGD with (heavy-ball) momentum.

Both need each client's number of local steps ``K_i``; the server computes it
(:func:`local_step_count`) rather than trusting a client to report it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

Arrays = Mapping[str, np.ndarray]


def local_step_count(num_examples: int, batch_size: int, epochs: int, steps: int = 0) -> int:
    """SGD steps of one local round (``fedwsa.train.local_batches``): ``steps`` when > 0,
    else ``epochs * ceil(n / batch_size)``; 0 without data."""
    if num_examples <= 0:
        return 0
    return steps if steps > 0 else epochs * math.ceil(num_examples / batch_size)


def scaffold_client_control(
    c_i: Arrays, c: Arrays, x: Arrays, y: Arrays, lr: float, norm: float
) -> dict[str, np.ndarray]:
    r"""Client ``i``'s new control variate, option II of SCAFFOLD's algorithm 1:

    .. math:: c_i^+ = c_i - c + \frac{1}{\eta \lVert a_i \rVert_1}(x - y_i)

    ``x`` is the global model the client started from, ``y`` its model after its local
    steps of learning rate ``eta``, each on ``g_i(y) - c_i + c``. For plain SGD
    ``norm`` = :math:`\lVert a_i\rVert_1` is the number of steps ``K`` (the paper's
    :math:`K\eta`); with momentum it is :func:`fednova_norm` ``(K, momentum)``, the sum of the
    weights momentum gives the ``K`` gradients in ``x - y``, so that ``(x - y) / (eta norm)``
    stays the average corrected gradient (with ``K eta`` it is up to 1 / (1 - momentum)
    times too large and the variates grow: SCAFFOLD fell to chance on digits that way).
    """
    if norm <= 0:
        raise ValueError("SCAFFOLD's control update needs at least one local step")
    return {k: c_i[k] - c[k] + (x[k].astype(np.float64) - y[k]) / (lr * norm) for k in x}


def scaffold_server_control(c: Arrays, deltas: Sequence[Arrays], num_clients: int) -> dict[str, np.ndarray]:
    r"""The server's new control variate: :math:`c \leftarrow c + \frac{1}{N}\sum_{i \in S}
    (c_i^+ - c_i)` over the sampled clients ``S`` of the ``N`` clients in all."""
    return {k: c[k] + sum(d[k] for d in deltas) / num_clients for k in c}


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
