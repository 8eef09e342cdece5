r"""Simulated attacks by invited clients (``attack=<kind>``; simulation and ``engine=inprocess``
only: in a real federation the clients are real). Pure functions over ``{name: array}``
dicts; the round loop applies them to the attackers' sound replies before clipping and
aggregation (``strategies/rounds.py``), and a label-flipping attacker's client flips its own
labels (``fedwsa/run/local_round.py``). Attacks on the model act on the update
:math:`\Delta = y - x` (``x``: the global model sent, ``y``: the model returned), over the
floating-point arrays; integer buffers pass unchanged.

- ``sign_flip``: :math:`y' = x - \Delta`;
- ``scale``: :math:`y' = x + s\,\Delta` (``attack.scale``);
- ``noise``: :math:`y' = y + \epsilon`, :math:`\epsilon \sim N(0, \sigma^2 I)` (``attack.noise_std``);
- ``label_flip``: the attacker trains on labels :math:`C - 1 - c` (data poisoning);
- ``alie`` (Baruch et al. 2019, "A Little Is Enough", https://arxiv.org/abs/1902.06156): every
  attacker sends :math:`x + \mu - z\,\sigma`, with :math:`\mu, \sigma` the coordinate-wise mean
  and (population) standard deviation of the round's updates and
  :math:`z = \Phi^{-1}((n - s)/n)`, :math:`s = \lfloor n/2 + 1\rfloor - m` (``n`` replies,
  ``m`` attackers among them), the largest shift that still hides inside the spread;
- ``scope``: against FedWSA's fused target, each scoped tensor of the attacker's model is
  rescaled about its own mean by ``attack.scale`` (its sigma times ``scale``, its mean kept):
  a small change of each weight, a large change of the scope the server fuses.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from statistics import NormalDist
from typing import Any

import numpy as np

from fedwsa.wsa import array_scope

KINDS: tuple[str, ...] = ("none", "sign_flip", "scale", "noise", "label_flip", "alie", "scope")
LABEL_FLIP = "attack-label-flip"  # train settings, to an attacker only: flip your labels
Arrays = Mapping[str, np.ndarray]


def attacker_count(num_clients: int, clients: float) -> int:
    """``attack.clients``: a count (>= 1, whole) or a fraction of ``num_clients`` (< 1, rounded)."""
    return int(clients) if clients >= 1 else round(clients * num_clients)


def choose_attackers(num_clients: int, clients: float, seed: int) -> list[int]:
    """Which partitions attack, drawn by ``seed`` (sorted)."""
    k = attacker_count(num_clients, clients)
    rng = np.random.default_rng([seed, 0xA77AC])
    return sorted(int(i) for i in rng.choice(num_clients, size=k, replace=False))


def _floats(a: Arrays) -> list[str]:
    return [k for k, v in a.items() if np.issubdtype(v.dtype, np.floating)]


def _update(x: Arrays, y: Arrays, f: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> dict[str, np.ndarray]:
    """``y`` with each float array replaced by ``f(x, y - x)`` (float64 inside)."""
    out = dict(y)
    for k in _floats(y):
        x64 = x[k].astype(np.float64)
        out[k] = np.asarray(f(x64, y[k].astype(np.float64) - x64)).astype(y[k].dtype)
    return out


def sign_flip(x: Arrays, y: Arrays) -> dict[str, np.ndarray]:
    return _update(x, y, lambda x0, d: x0 - d)


def scale(x: Arrays, y: Arrays, factor: float) -> dict[str, np.ndarray]:
    return _update(x, y, lambda x0, d: x0 + factor * d)


def noise(x: Arrays, y: Arrays, std: float, rng: np.random.Generator) -> dict[str, np.ndarray]:
    return _update(x, y, lambda x0, d: x0 + d + rng.normal(0.0, std, size=d.shape))


def alie_z(n: int, m: int) -> float:
    """Baruch et al.'s ``z_max`` for ``n`` clients of which ``m`` attack."""
    s = math.floor(n / 2 + 1) - m
    return NormalDist().inv_cdf((n - s) / n)


def alie(x: Arrays, ys: Sequence[Arrays], z: float) -> dict[str, np.ndarray]:
    """The one model every ALIE attacker sends, from all of the round's replies ``ys``."""
    out = dict(ys[0])
    for k in _floats(ys[0]):
        d = np.stack([y[k].astype(np.float64) - x[k] for y in ys])
        out[k] = (x[k].astype(np.float64) + d.mean(0) - z * d.std(0)).astype(ys[0][k].dtype)
    return out


def scope_shift(y: Arrays, names: Sequence[str], factor: float) -> dict[str, np.ndarray]:
    """Each scoped tensor rescaled about its mean: :math:`w' = \\mu + s (w - \\mu)`."""
    out = dict(y)
    for n in names:
        w = y[n].astype(np.float64)
        mu, _ = array_scope(y[n])
        out[n] = (mu + factor * (w - mu)).astype(y[n].dtype)
    return out


def flip_labels(labels: Any, num_classes: int) -> Any:
    """Label ``c`` becomes ``C - 1 - c`` (numpy or torch)."""
    return num_classes - 1 - labels
