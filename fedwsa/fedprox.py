"""FedProx's client term: Li et al. 2020, "Federated Optimization in Heterogeneous Networks",
https://arxiv.org/abs/1812.06127. The server side is Flower's FedProx, which sends
``proximal-mu`` (``strategies/algorithms/fedprox.py``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from fedwsa.terms import Arrays, ClientTerm, Regularizer, grad_of

PROXIMAL_MU = "proximal-mu"  # train settings: mu (Flower's FedProx's own key)


def proximal_term(params: Sequence[Tensor], anchor: Sequence[Tensor], mu: float) -> Tensor:
    r"""FedProx's proximal term.

    .. math:: \frac{\mu}{2}\,\lVert w - w^t \rVert_2^2 = \frac{\mu}{2}\sum_j (w_j - w^t_j)^2

    Note the square: several public implementations use the plain norm instead.
    """
    total = torch.zeros(())
    for w, w0 in zip(params, anchor, strict=True):
        total = total + (w - w0).pow(2).sum()
    return 0.5 * mu * total


class Proximal(Regularizer):
    r"""FedProx, anchored at the model's parameters when built; gradient :math:`\mu (w - w^t)`."""

    def __init__(self, model: nn.Module, mu: float) -> None:
        self.anchor = [p.detach().clone() for p in model.parameters()]
        self.mu = mu

    def __call__(self, model: nn.Module) -> Tensor:
        return proximal_term(list(model.parameters()), self.anchor, self.mu)

    @torch.no_grad()
    def add_grad(self, model: nn.Module) -> None:
        for p, p0 in zip(model.parameters(), self.anchor, strict=True):
            grad_of(p).add_(p - p0, alpha=self.mu)


def _build(
    model: nn.Module, config: Mapping[str, Any], arrays: Arrays, device: torch.device
) -> Proximal | None:
    mu = float(config.get(PROXIMAL_MU, 0.0))
    return Proximal(model, mu) if mu > 0 else None


TERM = ClientTerm("proximal", _build)
