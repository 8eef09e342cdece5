"""Regularizers handed to :func:`fedwsa.train.train`: FedProx's proximal term, WSA, and
SCAFFOLD's gradient correction.

A regularizer is a term added to the task loss at every step; training applies its
gradient in one fused pass after the task loss's backward (see :class:`Regularizer`).
:func:`make_regularizer` builds the one a client needs from the server's settings; every
setting at 0 returns ``None``, which is plain FedAvg training.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from fedwsa.wsa import DISTANCES, add_wsa_grad_, layer_factors, wsa_penalty


def proximal_term(params: Sequence[Tensor], anchor: Sequence[Tensor], mu: float) -> Tensor:
    r"""FedProx's proximal term (Li et al. 2020, https://arxiv.org/abs/1812.06127).

    .. math:: \frac{\mu}{2}\,\lVert w - w^t \rVert_2^2 = \frac{\mu}{2}\sum_j (w_j - w^t_j)^2

    Note the square: several public implementations use the plain norm instead.
    """
    total = torch.zeros(())
    for w, w0 in zip(params, anchor, strict=True):
        total = total + (w - w0).pow(2).sum()
    return 0.5 * mu * total


class Regularizer:
    """A term added to the task loss. Two equivalent ways to apply it:

    - ``reg(model)``: the term as a differentiable scalar (autograd; the reference);
    - ``reg.add_grad(model)``: after ``loss.backward()`` on the task loss, add the term's
      gradient to every ``p.grad`` in one fused pass, from its closed form, like weight
      decay. This is what training uses (``fedwsa.train.train(fused=True)``).
    """

    def __call__(self, model: nn.Module) -> Tensor:
        raise NotImplementedError

    def add_grad(self, model: nn.Module) -> None:
        raise NotImplementedError


def _grad(p: Tensor) -> Tensor:
    if p.grad is None:
        p.grad = torch.zeros_like(p)
    return p.grad


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
            _grad(p).add_(p - p0, alpha=self.mu)


class WSA(Regularizer):
    r"""WSA: :math:`\lambda \sum_l D(N(\mu_l,\sigma_l^2)\|N(\mu^*_l,\sigma^{*2}_l))`.

    The fused gradient of each layer is :func:`fedwsa.wsa.add_wsa_grad_`, beside its distance.
    """

    def __init__(
        self, target: np.ndarray, names: Sequence[str], lam: float, distance: str, normalize: str = "none"
    ) -> None:
        self.target = np.asarray(target, dtype=np.float64).reshape(-1, 2)
        self.target_t = torch.as_tensor(np.asarray(target), dtype=torch.float32)
        self.targets = [(float(m), float(s)) for m, s in self.target]
        self.names, self.lam, self.distance, self.normalize = list(names), lam, distance, normalize
        if distance not in DISTANCES:
            raise ValueError(f"unknown distance {distance!r}")
        self._factors: list[float] | None = None

    def factors(self, params: Mapping[str, Tensor]) -> list[float] | None:
        """Each layer's ``c_l`` (:func:`fedwsa.wsa.layer_factors`); ``None`` for ``none``."""
        if self.normalize == "none":
            return None
        if self._factors is None:
            sizes = [params[n].numel() for n in self.names]
            self._factors = layer_factors(self.target, sizes, self.distance, self.normalize).tolist()
        return self._factors

    def __call__(self, model: nn.Module) -> Tensor:
        params = dict(model.named_parameters())
        weights = self.factors(params)
        return self.lam * wsa_penalty([params[n] for n in self.names], self.target_t, self.distance, weights)

    @torch.no_grad()
    def add_grad(self, model: nn.Module) -> None:
        params = dict(model.named_parameters())
        if len(self.names) != len(self.targets):
            raise ValueError(f"{len(self.names)} scoped tensors but a target scope of {len(self.targets)}")
        weights = self.factors(params) or [1.0] * len(self.names)
        for name, (mu_t, sigma_t), c in zip(self.names, self.targets, weights, strict=True):
            add_wsa_grad_(params[name], mu_t, sigma_t, self.lam * c, self.distance)


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
            _grad(params[n]).add_(c)


class Sum(Regularizer):
    def __init__(self, terms: Sequence[Regularizer]) -> None:
        self.terms = list(terms)

    def __call__(self, model: nn.Module) -> Tensor:
        return sum((t(model) for t in self.terms), torch.zeros(()))

    def add_grad(self, model: nn.Module) -> None:
        for t in self.terms:
            t.add_grad(model)


def make_proximal(model: nn.Module, mu: float) -> Regularizer:
    """Proximal regularizer anchored at the model's parameters at the time of the call."""
    return Proximal(model, mu)


def make_wsa(
    target: np.ndarray, names: Sequence[str], lam: float, distance: str, normalize: str = "none"
) -> Regularizer:
    """WSA regularizer toward ``target`` (see :class:`WSA`)."""
    return WSA(target, names, lam, distance, normalize)


def make_regularizer(
    model: nn.Module,
    *,
    proximal_mu: float = 0.0,
    wsa_lambda: float = 0.0,
    target: np.ndarray | None = None,
    names: Sequence[str] = (),
    distance: str = "kl",
    normalize: str = "none",
    correction: Mapping[str, Tensor] | None = None,
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
        terms.append(make_wsa(target, names, wsa_lambda, distance, normalize))
    if correction:
        terms.append(ControlVariate(correction))
    if not terms:
        return None
    return terms[0] if len(terms) == 1 else Sum(terms)
