"""Regularizers handed to :func:`fedwsa.train.train`: FedProx's proximal term and WSA.

A regularizer is a function ``model -> scalar tensor`` added to the task loss at every
step. :func:`make_regularizer` builds the one a client needs from the server's settings;
every setting at 0 returns ``None``, which is plain FedAvg training.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from fedwsa.wsa import wsa_penalty

Regularizer = Callable[[nn.Module], Tensor]


def proximal_term(params: Sequence[Tensor], anchor: Sequence[Tensor], mu: float) -> Tensor:
    r"""FedProx's proximal term (Li et al. 2020, https://arxiv.org/abs/1812.06127).

    .. math:: \frac{\mu}{2}\,\lVert w - w^t \rVert_2^2 = \frac{\mu}{2}\sum_j (w_j - w^t_j)^2

    Note the square: several public implementations use the plain norm instead.
    """
    total = torch.zeros(())
    for w, w0 in zip(params, anchor, strict=True):
        total = total + (w - w0).pow(2).sum()
    return 0.5 * mu * total


def make_proximal(model: nn.Module, mu: float) -> Regularizer:
    """Proximal regularizer anchored at the model's parameters at the time of the call."""
    anchor = [p.detach().clone() for p in model.parameters()]
    return lambda m: proximal_term(list(m.parameters()), anchor, mu)


def make_wsa(target: np.ndarray, names: Sequence[str], lam: float, distance: str) -> Regularizer:
    r"""WSA regularizer :math:`\lambda \sum_l D(N(\mu_l,\sigma_l^2)\|N(\mu^*_l,\sigma^{*2}_l))`."""
    target_t = torch.as_tensor(np.asarray(target), dtype=torch.float32)
    names = list(names)

    def regularizer(model: nn.Module) -> Tensor:
        params = dict(model.named_parameters())
        return lam * wsa_penalty([params[n] for n in names], target_t, distance)

    return regularizer


def make_regularizer(
    model: nn.Module,
    *,
    proximal_mu: float = 0.0,
    wsa_lambda: float = 0.0,
    target: np.ndarray | None = None,
    names: Sequence[str] = (),
    distance: str = "kl",
) -> Regularizer | None:
    """The sum of the active terms for this client, or ``None`` when none is active.

    Call it after loading the global parameters into ``model``: the proximal term is
    anchored at them.
    """
    terms: list[Regularizer] = []
    if proximal_mu > 0:
        terms.append(make_proximal(model, proximal_mu))
    if wsa_lambda > 0:
        if target is None:
            raise ValueError("wsa_lambda > 0 needs a target scope")
        terms.append(make_wsa(target, names, wsa_lambda, distance))
    if not terms:
        return None
    if len(terms) == 1:
        return terms[0]
    return lambda m: sum((t(m) for t in terms), torch.zeros(()))
