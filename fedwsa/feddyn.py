r"""FedDyn: Acar et al. 2021, "Federated Learning Based on Dynamic Regularization",
https://arxiv.org/abs/2111.04263 (ICLR 2021), algorithm 1. Pure math: the client's term, and
the server's updates of each client's state and of ``h`` over ``{name: array}`` dicts
(float64 inside). The strategy is ``strategies/algorithms/feddyn.py``.

Client ``k`` in round ``t`` starts from the global model :math:`\theta^{t-1}` and minimises

.. math:: L_k(\theta) - \langle g_k, \theta \rangle + \frac{\alpha}{2}\lVert\theta - \theta^{t-1}\rVert^2

where :math:`g_k = \nabla L_k(\theta_k^{t-1})` is its state, zero at first. The clients stay
stateless: the server keeps every :math:`g_k` (it computes the new one from the model the
client sent, :func:`feddyn_client_state`, rather than trusting the client) and sends it with
the train message under :data:`FEDDYN_STATE`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from fedwsa.terms import Arrays as MessageArrays
from fedwsa.terms import ClientTerm, Regularizer, grad_of

Arrays = Mapping[str, np.ndarray]
FEDDYN_ALPHA = "feddyn-alpha"  # train settings: alpha
FEDDYN_STATE = "feddyn-state"  # train message: the client's g_k (an ArrayRecord, one array per parameter)


class Dynamic(Regularizer):
    r"""The client's term :math:`-\langle g_k, \theta\rangle + \frac{\alpha}{2}\lVert\theta -
    \theta^{t-1}\rVert^2`, anchored at the model's parameters when built; gradient
    :math:`-g_k + \alpha(\theta - \theta^{t-1})`."""

    def __init__(self, model: nn.Module, state: Mapping[str, Tensor], alpha: float) -> None:
        self.anchor = {n: p.detach().clone() for n, p in model.named_parameters()}
        self.state, self.alpha = dict(state), alpha

    def __call__(self, model: nn.Module) -> Tensor:
        total = torch.zeros(())
        for n, p in model.named_parameters():
            total = total + 0.5 * self.alpha * (p - self.anchor[n]).pow(2).sum()
            if n in self.state:
                total = total - (self.state[n] * p).sum()
        return total

    @torch.no_grad()
    def add_grad(self, model: nn.Module) -> None:
        for n, p in model.named_parameters():
            g = grad_of(p)
            g.add_(p - self.anchor[n], alpha=self.alpha)
            if n in self.state:
                g.sub_(self.state[n])


def feddyn_client_state(g_k: Arrays, x: Arrays, y_k: Arrays, alpha: float) -> dict[str, np.ndarray]:
    r"""Client ``k``'s new state after it sent :math:`\theta_k^t` = ``y_k`` from ``x`` =
    :math:`\theta^{t-1}`: :math:`g_k \leftarrow g_k - \alpha(\theta_k^t - \theta^{t-1})`
    (the first-order condition of its local problem)."""
    return {k: g_k[k] - alpha * (y_k[k].astype(np.float64) - x[k]) for k in g_k}


def feddyn_server(
    h: Arrays, x: Arrays, ys: Sequence[Arrays], alpha: float, num_clients: int
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    r"""The server's step over the ``ys`` of the clients that replied (``num_clients`` = m,
    all clients):

    .. math:: h^t = h^{t-1} - \frac{\alpha}{m}\sum_{k \in P_t}(\theta_k^t - \theta^{t-1}),
              \qquad \theta^t = \frac{1}{|P_t|}\sum_{k\in P_t}\theta_k^t - \frac{1}{\alpha} h^t

    (an unweighted mean, as in the paper). Returns ``(h^t, theta^t)``, float64, over ``h``'s
    keys (the model's parameters)."""
    new_h = {k: h[k] - alpha / num_clients * sum(y[k].astype(np.float64) - x[k] for y in ys) for k in h}
    theta = {k: sum(y[k].astype(np.float64) for y in ys) / len(ys) - new_h[k] / alpha for k in h}
    return new_h, theta


def _build(
    model: nn.Module, config: Mapping[str, Any], arrays: MessageArrays, device: torch.device
) -> Dynamic | None:
    alpha = float(config.get(FEDDYN_ALPHA, 0.0))
    if alpha <= 0:
        return None
    state = {k: v.to(device) for k, v in (arrays.get(FEDDYN_STATE) or {}).items()}
    return Dynamic(model, state, alpha)


TERM = ClientTerm("feddyn", _build)
