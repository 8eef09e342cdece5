"""SCAFFOLD's control variates: Karimireddy et al. 2020, "SCAFFOLD: Stochastic Controlled
Averaging for Federated Learning", https://arxiv.org/abs/1910.06378, option II of its control
update. Pure functions over ``{name: array}`` dicts (float64 inside).

It needs each client's number of local steps ``K_i``; the server computes it
(:func:`fedwsa.train.local_step_count`) rather than trusting a client to report it. The
client's side of SCAFFOLD, ``g - c_i + c`` at every step, is :class:`ControlVariate`; the
server sends each client its ``c - c_i`` under :data:`SCAFFOLD_CORRECTION`.
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
SCAFFOLD_CORRECTION = "scaffold-correction"  # train message: the client's c - c_i (an ArrayRecord)


def scaffold_client_control(
    c_i: Arrays, c: Arrays, x: Arrays, y: Arrays, lr: float, norm: float
) -> dict[str, np.ndarray]:
    r"""Client ``i``'s new control variate, option II of SCAFFOLD's algorithm 1:

    .. math:: c_i^+ = c_i - c + \frac{1}{\eta \lVert a_i \rVert_1}(x - y_i)

    ``x`` is the global model the client started from, ``y`` its model after its local
    steps of learning rate ``eta``, each on ``g_i(y) - c_i + c``. For plain SGD
    ``norm`` = :math:`\lVert a_i\rVert_1` is the number of steps ``K`` (the paper's
    :math:`K\eta`); with momentum it is :func:`fedwsa.fednova.fednova_norm` ``(K, momentum)``, the sum of the
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


class ControlVariate(Regularizer):
    r"""SCAFFOLD's correction: the local step uses :math:`g_i(y) - c_i + c`, i.e. the term
    :math:`\langle c - c_i, w\rangle` whose gradient is the constant ``correction`` = c - c_i
    (one tensor per named parameter; names without one are not corrected)."""

    def __init__(self, correction: Mapping[str, Tensor]) -> None:
        self.correction = dict(correction)

    def __call__(self, model: nn.Module) -> Tensor:
        params = dict(model.named_parameters())
        return sum(((params[n] * c).sum() for n, c in self.correction.items()), torch.zeros(()))

    @torch.no_grad()
    def add_grad(self, model: nn.Module) -> None:
        params = dict(model.named_parameters())
        for n, c in self.correction.items():
            grad_of(params[n]).add_(c)


def _build(
    model: nn.Module, config: Mapping[str, Any], arrays: MessageArrays, device: torch.device
) -> ControlVariate | None:
    correction = arrays.get(SCAFFOLD_CORRECTION)
    return ControlVariate({k: v.to(device) for k, v in correction.items()}) if correction else None


TERM = ClientTerm("scaffold", _build)
