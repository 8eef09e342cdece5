"""Weight Scope Alignment (WSA): scopes, distances, the regularizer and scope fusion.

Reference: Xu, Li, Gan, Zhan, "Weight Scope Alignment: A Frustratingly Easy Method for
Model Merging", https://arxiv.org/abs/2408.12237. The exact family implemented here is
defined in the project's design note (``shared/design/WSA.md``); every function states
its equation and ``tests/test_wsa.py`` checks it against numbers computed by hand.

A *scope* is an ``(L, 2)`` float64 array: row ``l`` holds ``(mu_l, sigma_l)`` of the
``l``-th scoped tensor, in the model's ``named_parameters()`` order.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from fedwsa.robust import robust_scope
from fedwsa.terms import Arrays, ClientTerm, Regularizer

EPS = 1e-8
"""``eps`` inside the square root of ``sigma``; keeps the KL finite for constant tensors."""

Distance = Literal["kl", "w2"]
Fusion = Literal["mean", "mixture", "global"]
DISTANCES: tuple[str, ...] = ("kl", "w2")
FUSIONS: tuple[str, ...] = ("mean", "mixture", "global", "median", "trimmed")


def scoped_names(model: nn.Module, include_all: bool = False) -> list[str]:
    """Names of the scoped parameters, in ``named_parameters()`` order.

    By default only tensors with ``ndim >= 2`` (conv and linear kernels) are scoped;
    ``include_all=True`` also scopes biases and normalisation parameters.
    """
    return [n for n, p in model.named_parameters() if include_all or p.ndim >= 2]


def tensor_scope(w: Tensor, eps: float = EPS) -> tuple[Tensor, Tensor]:
    r"""Differentiable scope of one tensor.

    .. math:: \mu = \frac{1}{n}\sum_i w_i, \qquad
              \sigma = \sqrt{\frac{1}{n}\sum_i (w_i - \mu)^2 + \epsilon}
    """
    mu = w.mean()
    sigma = torch.sqrt((w - mu).pow(2).mean() + eps)
    return mu, sigma


def array_scope(w: np.ndarray, eps: float = EPS) -> tuple[float, float]:
    """Same as :func:`tensor_scope` for a numpy array, computed in float64 (reporting)."""
    w64 = np.asarray(w, dtype=np.float64)
    mu = float(w64.mean())
    return mu, float(np.sqrt(np.mean((w64 - mu) ** 2) + eps))


def scope_of_arrays(arrays: Mapping[str, np.ndarray], names: Sequence[str]) -> np.ndarray:
    """Scope ``(L, 2)`` of the named arrays (e.g. a state dict converted to numpy)."""
    return np.array([array_scope(arrays[n]) for n in names], dtype=np.float64).reshape(-1, 2)


def model_scope(model: nn.Module, names: Sequence[str]) -> np.ndarray:
    """Scope ``(L, 2)`` of a model's named parameters, detached, in float64."""
    params = dict(model.named_parameters())
    return scope_of_arrays({n: params[n].detach().cpu().numpy() for n in names}, names)


def kl_distance(mu: Tensor, sigma: Tensor, mu_t: Tensor, sigma_t: Tensor) -> Tensor:
    r"""KL divergence of two 1-D Gaussians, :math:`KL(N(\mu,\sigma^2)\,\|\,N(\mu^*,\sigma^{*2}))`.

    .. math:: \log\frac{\sigma^*}{\sigma} + \frac{\sigma^2 + (\mu-\mu^*)^2}{2\sigma^{*2}}
              - \frac{1}{2}

    Scale free: the same ``lambda`` works for layers of very different magnitude.
    """
    return torch.log(sigma_t / sigma) + (sigma**2 + (mu - mu_t) ** 2) / (2 * sigma_t**2) - 0.5


def kl_partials(mu: float, sigma: float, mu_t: float, sigma_t: float) -> tuple[float, float]:
    r""":math:`(\partial D/\partial\mu,\ \partial D/\partial\sigma)` of :func:`kl_distance`.

    .. math:: \frac{\mu-\mu^*}{\sigma^{*2}}, \qquad \frac{\sigma}{\sigma^{*2}} - \frac{1}{\sigma}
    """
    return (mu - mu_t) / sigma_t**2, sigma / sigma_t**2 - 1.0 / sigma


def w2_distance(mu: Tensor, sigma: Tensor, mu_t: Tensor, sigma_t: Tensor) -> Tensor:
    r"""Squared 2-Wasserstein distance of two 1-D Gaussians.

    .. math:: (\mu-\mu^*)^2 + (\sigma-\sigma^*)^2
    """
    return (mu - mu_t) ** 2 + (sigma - sigma_t) ** 2


def w2_partials(mu: float, sigma: float, mu_t: float, sigma_t: float) -> tuple[float, float]:
    r""":math:`(\partial D/\partial\mu,\ \partial D/\partial\sigma)` of :func:`w2_distance`.

    .. math:: 2(\mu-\mu^*), \qquad 2(\sigma-\sigma^*)
    """
    return 2.0 * (mu - mu_t), 2.0 * (sigma - sigma_t)


_DISTANCE_FNS: dict[str, Callable[[Tensor, Tensor, Tensor, Tensor], Tensor]] = {
    "kl": kl_distance,
    "w2": w2_distance,
}
_PARTIALS: dict[str, Callable[[float, float, float, float], tuple[float, float]]] = {
    "kl": kl_partials,
    "w2": w2_partials,
}


@torch.no_grad()
def add_wsa_grad_(w: Tensor, mu_t: float, sigma_t: float, lam: float, distance: str) -> None:
    r"""Add the gradient of :math:`\lambda D(N(\mu,\sigma^2)\|N(\mu^*,\sigma^{*2}))` to ``w.grad``.

    From :math:`\partial\mu/\partial w_i = 1/n` and
    :math:`\partial\sigma/\partial w_i = (w_i-\mu)/(n\sigma)`, for a tensor of ``n`` weights:

    .. math:: \frac{\partial D}{\partial w_i} = \frac{1}{n}\frac{\partial D}{\partial\mu}
              + \frac{\partial D}{\partial\sigma}\,\frac{w_i-\mu}{n\sigma}

    computed in this centred form: ``c = w - mean(w)`` in the tensor's dtype, less its own
    rounding residual ``r = mean(c)``, so that the result keeps its precision when
    :math:`\sigma \ll |\mu|` (a constant tensor, say), as autograd's does; the partials are
    :func:`kl_partials` / :func:`w2_partials`.
    """
    var, mean = torch.var_mean(w, correction=0)
    centred = w - mean
    r = float(centred.mean())
    mu, sigma = float(mean) + r, math.sqrt(float(var) + EPS)
    d_mu, d_sigma = _PARTIALS[distance](mu, sigma, mu_t, sigma_t)
    n = w.numel()
    c1 = lam * d_sigma / (n * sigma)
    if w.grad is None:
        w.grad = torch.zeros_like(w)
    w.grad.add_(centred, alpha=c1).add_(lam * d_mu / n - c1 * r)


def wsa_penalty(
    params: Sequence[Tensor], target: Tensor, distance: str = "kl", weights: Sequence[float] | None = None
) -> Tensor:
    r"""Sum over scoped tensors of the scope distance to the target, each term times its
    weight ``c_l`` (default 1; see :func:`layer_factors`).

    .. math:: \sum_l c_l\, D\big(N(\mu_l, \sigma_l^2) \,\|\, N(\mu^*_l, \sigma^{*2}_l)\big)

    ``target`` is an ``(L, 2)`` tensor; gradients flow through ``mu_l`` and ``sigma_l``.
    """
    if len(params) != target.shape[0]:
        raise ValueError(f"{len(params)} scoped tensors but a target scope of {target.shape[0]}")
    dist = _DISTANCE_FNS[distance]
    total = torch.zeros((), dtype=target.dtype, device=target.device)
    for i, (w, (mu_t, sigma_t)) in enumerate(zip(params, target, strict=True)):
        mu, sigma = tensor_scope(w)
        term = dist(mu, sigma, mu_t, sigma_t)
        total = total + (term if weights is None else weights[i] * term)
    return total


NORMALIZATIONS: tuple[str, ...] = ("none", "per_weight")


def layer_factors(target: np.ndarray, sizes: Sequence[int], distance: str, normalize: str) -> np.ndarray:
    r"""The weight ``c_l`` of each layer's term (option ``wsa_normalize``).

    Near the target, ``D`` has curvature ``d^2 D / d sigma^2 = 2 / sigma*^2`` (KL; the
    second derivative of ``log(sigma*/sigma) + sigma^2 / (2 sigma*^2)`` at ``sigma*``) or
    ``2`` (W2), and ``d sigma / d w_i = (w_i - mu) / (n sigma)`` has squared norm ``1 / n``.
    So along the direction that changes ``sigma``, one weight of a layer of ``n`` weights
    sees the curvature

    .. math:: h_l = \lambda c_l \frac{2}{n_l \sigma^{*2}_l}\ (KL), \qquad
              h_l = \lambda c_l \frac{2}{n_l}\ (W2)

    (the mean's direction has half of it). ``none``: ``c_l = 1``, so layers with few weights
    or a small spread are pulled much harder. ``per_weight``: ``c_l = n_l sigma*_l^2`` (KL)
    or ``n_l`` (W2), so that ``h_l = 2 lambda`` in every layer.
    """
    t = np.asarray(target, dtype=np.float64).reshape(-1, 2)
    n = np.asarray(sizes, dtype=np.float64)
    if normalize == "none":
        return np.ones(len(n))
    if normalize != "per_weight":
        raise ValueError(f"unknown wsa_normalize {normalize!r}; expected one of {', '.join(NORMALIZATIONS)}")
    return n * t[:, 1] ** 2 if distance == "kl" else n


def layer_curvature(target: np.ndarray, sizes: Sequence[int], distance: str, normalize: str) -> np.ndarray:
    """Each layer's ``h_l`` of :func:`layer_factors` at ``lambda = 1``: the WSA term's curvature
    per weight along the direction that changes ``sigma``."""
    t = np.asarray(target, dtype=np.float64).reshape(-1, 2)
    n = np.asarray(sizes, dtype=np.float64)
    c = layer_factors(t, sizes, distance, normalize)
    return 2 * c / (n * t[:, 1] ** 2) if distance == "kl" else 2 * c / n


def stable_lambda(
    target: np.ndarray, sizes: Sequence[int], distance: str, normalize: str, lr: float, momentum: float
) -> tuple[float, int]:
    r"""The largest ``lambda`` for which SGD with learning rate ``lr`` and heavy-ball momentum
    ``momentum`` is stable on the WSA term alone near ``target``, and the layer that sets it.

    Heavy-ball SGD on a quadratic of curvature ``h`` is stable while
    ``lr * h < 2 (1 + momentum)``; with ``h_l`` of :func:`layer_factors` (at ``lambda = 1``)
    that is ``lambda < 2 (1 + momentum) / (lr * max_l h_l)``. Beyond it ``sigma`` oscillates
    and grows (period 2) instead of settling at the target.
    """
    h = layer_curvature(target, sizes, distance, normalize)
    worst = int(np.argmax(h))
    return float(2 * (1 + momentum) / (lr * h[worst])), worst


def model_stable_lambda(
    model: nn.Module, names: Sequence[str], distance: str, normalize: str, lr: float, momentum: float
) -> tuple[float, str]:
    """:func:`stable_lambda` with ``model``'s own scope as the target (the initial target of a
    run from ``model``): the bound, and the name of the scoped tensor that sets it."""
    params = dict(model.named_parameters())
    sizes = [params[n].numel() for n in names]
    bound, worst = stable_lambda(model_scope(model, names), sizes, distance, normalize, lr, momentum)
    return bound, names[worst]


def fuse_scopes(
    scopes: Sequence[np.ndarray], weights: Sequence[float], method: str, trim: float = 0.2
) -> np.ndarray:
    r"""Fuse the scopes of K models into one target, with weights normalised to sum 1.

    ``mean``:    :math:`\mu^* = \sum_k p_k\mu_k,\ \sigma^* = \sum_k p_k\sigma_k`.

    ``mixture``: :math:`\mu^* = \sum_k p_k\mu_k,\
    \sigma^{*2} = \sum_k p_k(\sigma_k^2 + \mu_k^2) - \mu^{*2}`, the moment match of the
    mixture, computed as :math:`\sum_k p_k(\sigma_k^2 + (\mu_k - \mu^*)^2)`, which is the
    same quantity without the cancellation.

    ``median``, ``trimmed``: robust to a minority of clients (``fedwsa.robust.robust_scope``;
    unweighted, ``trim`` the trimmed fraction at each end). (``global`` is not a function of the
    client scopes; see :func:`next_target`.)
    """
    if not scopes:
        raise ValueError("no scopes to fuse")
    s = np.stack([np.asarray(x, dtype=np.float64) for x in scopes])  # (K, L, 2)
    p = np.asarray(weights, dtype=np.float64)
    if p.shape != (s.shape[0],) or np.any(p < 0) or p.sum() <= 0:
        raise ValueError("weights must be K non-negative numbers with a positive sum")
    if method in ("median", "trimmed"):
        return robust_scope(s, method, trim)
    p = p / p.sum()
    mu = np.einsum("k,kl->l", p, s[:, :, 0])
    if method == "mean":
        sigma = np.einsum("k,kl->l", p, s[:, :, 1])
    elif method == "mixture":
        var = np.einsum("k,kl->l", p, s[:, :, 1] ** 2 + (s[:, :, 0] - mu) ** 2)
        sigma = np.sqrt(var)
    else:
        raise ValueError(f"unknown fusion {method!r}; expected one of mean, mixture, median, trimmed")
    return np.stack([mu, sigma], axis=1)


def next_target(
    method: str,
    client_scopes: Sequence[np.ndarray],
    weights: Sequence[float],
    aggregated_scope: np.ndarray,
    trim: float = 0.2,
) -> np.ndarray:
    """Target scope of the next round: ``global`` is the aggregated model's own scope."""
    if method == "global":
        return np.asarray(aggregated_scope, dtype=np.float64).copy()
    return fuse_scopes(client_scopes, weights, method, trim)


def align_to_scope(
    arrays: Mapping[str, np.ndarray], names: Sequence[str], target: np.ndarray
) -> dict[str, np.ndarray]:
    r"""Rescale each scoped tensor to the target scope (option ``align_global``).

    .. math:: w \leftarrow \mu^* + (w - \mu)\,\frac{\sigma^*}{\sigma}

    where ``(mu, sigma)`` is the tensor's own scope. Other arrays are returned unchanged;
    dtypes are preserved.
    """
    out = dict(arrays)
    for name, (mu_t, sigma_t) in zip(names, np.asarray(target), strict=True):
        w = np.asarray(arrays[name])
        mu, sigma = array_scope(w)
        out[name] = (mu_t + (w.astype(np.float64) - mu) * (sigma_t / sigma)).astype(w.dtype)
    return out


class WSA(Regularizer):
    r"""WSA: :math:`\lambda \sum_l D(N(\mu_l,\sigma_l^2)\|N(\mu^*_l,\sigma^{*2}_l))`.

    The fused gradient of each layer is :func:`add_wsa_grad_`, beside its distance.
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
        """Each layer's ``c_l`` (:func:`layer_factors`); ``None`` for ``none``."""
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


# --- the client term and its keys in a train message (sent by strategies/algorithms/fedwsa.py)
WSA_LAMBDA = "wsa-lambda"
WSA_DISTANCE = "wsa-distance"
WSA_SCOPE_ALL = "wsa-scope-all"
WSA_NORMALIZE = "wsa-normalize"
TARGET_MU = "wsa-target-mu"
TARGET_SIGMA = "wsa-target-sigma"


def encode_scope(scope: np.ndarray, mu_key: str, sigma_key: str) -> dict[str, list[float]]:
    s = np.asarray(scope, dtype=np.float64).reshape(-1, 2)
    return {mu_key: s[:, 0].tolist(), sigma_key: s[:, 1].tolist()}


def decode_scope(d: Any, mu_key: str, sigma_key: str) -> np.ndarray:
    mu, sigma = list(d[mu_key]), list(d[sigma_key])
    if len(mu) != len(sigma):
        raise ValueError(f"{mu_key} has {len(mu)} entries but {sigma_key} has {len(sigma)}")
    return np.array([mu, sigma], dtype=np.float64).T.reshape(-1, 2)


def encode_wsa(
    lam: float, distance: str, scope_all: bool, target: np.ndarray, normalize: str = "none"
) -> dict[str, Any]:
    """FedWSA's knobs and the round's target scope, for the round's ``ConfigRecord``."""
    return {
        WSA_LAMBDA: lam, WSA_DISTANCE: distance, WSA_SCOPE_ALL: scope_all, WSA_NORMALIZE: normalize,
        **encode_scope(target, TARGET_MU, TARGET_SIGMA),
    }  # fmt: skip


def make_wsa(
    target: np.ndarray, names: Sequence[str], lam: float, distance: str, normalize: str = "none"
) -> Regularizer:
    """WSA regularizer toward ``target`` (see :class:`WSA`)."""
    return WSA(target, names, lam, distance, normalize)


def _build(model: nn.Module, config: Mapping[str, Any], arrays: Arrays, device: torch.device) -> WSA | None:
    lam = float(config.get(WSA_LAMBDA, 0.0))
    if lam <= 0:
        return None
    if TARGET_MU not in config:
        raise ValueError("wsa-lambda > 0 needs a target scope")
    names = scoped_names(model, bool(config.get(WSA_SCOPE_ALL, False)))
    target = decode_scope(config, TARGET_MU, TARGET_SIGMA)
    return WSA(
        target, names, lam, str(config.get(WSA_DISTANCE, "kl")), str(config.get(WSA_NORMALIZE, "none"))
    )


TERM = ClientTerm("wsa", _build)
