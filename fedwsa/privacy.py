"""Differential privacy: the mechanisms' kinds, their noise, and the privacy spent.

The mechanisms are Flower's (server-side strategy wrappers and ClientApp mods; glue in
``strategies/privacy.py`` and ``clients/privacy.py``); the accounting is Google's
``dp-accounting`` (its RDP accountant), never a formula of ours. This module holds what
both sides share, without Flower:

- ``central_fixed``: the server clips each update to ``C`` and adds Gaussian noise of
  standard deviation ``z C / m`` to the mean of the ``m`` clipped updates (McMahan et al.
  2018, DP-FedAvg). Per round: one Gaussian mechanism of noise multiplier ``z`` on the mean
  (sensitivity ``C / m`` when one client is added or removed).
- ``client_fixed``: the same release, but each client clips its own update (Flower's
  ``fixedclipping_mod``); the server checks the bound and rejects an update beyond it.
- ``central_adaptive``: server-side clipping whose norm follows a quantile of the update
  norms (Andrew et al. 2021), from a noisy count of clipped updates. Flower noises the count
  (sensitivity 1) with ``clipped_count_stddev`` and the mean with its own multiplier, and
  adapts the norm before it noises the mean; each round composes both Gaussians exactly as
  they were applied (:func:`adaptive_events`).
- ``local``: each client clips its update to ``C`` and adds Gaussian noise itself (Flower's
  ``LocalDpMod``, standard deviation ``s sqrt(2 ln(1.25/delta)) / epsilon``, the classical
  Gaussian mechanism at the given per-round epsilon, with sensitivity ``s = 2C``: two
  updates of norm at most ``C`` differ by at most ``2C``). What the server computes from the
  noised replies is post-processing, for every strategy.

No amplification by sampling is claimed (each client is counted in every round): the
epsilon is an upper bound for fixed-size sampling, exact when every client trains each round.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np

KINDS: tuple[str, ...] = ("none", "central_fixed", "central_adaptive", "client_fixed", "local")
CENTRAL: tuple[str, ...] = ("central_fixed", "central_adaptive", "client_fixed")


def central_noise_std(noise_multiplier: float, clipping_norm: float, sampled: int) -> float:
    """The standard deviation of the noise on the mean of ``sampled`` clipped updates
    (Flower's ``compute_stdv``): ``z C / m``."""
    return noise_multiplier * clipping_norm / sampled


def local_sensitivity(clipping_norm: float) -> float:
    """L2 sensitivity of one client's clipped update: ``2C``."""
    return 2.0 * clipping_norm


def local_noise_std(clipping_norm: float, epsilon: float, delta: float) -> float:
    """The standard deviation ``LocalDpMod`` adds to each parameter of a client's update."""
    return local_sensitivity(clipping_norm) * math.sqrt(2 * math.log(1.25 / delta)) / epsilon


def local_noise_multiplier(epsilon: float, delta: float) -> float:
    """Noise standard deviation over sensitivity of ``LocalDpMod`` at per-round ``epsilon``."""
    return math.sqrt(2 * math.log(1.25 / delta)) / epsilon


def adaptive_events(
    update_multiplier: float, clip_used: float, clip_for_noise: float, count_std: float
) -> list[float]:
    """The Gaussian noise multipliers one round of Flower's adaptive clipping applied: the
    mean's (its noise scaled by the norm after the update, its sensitivity by the norm
    used to clip) and the clipped count's (sensitivity 1)."""
    return [update_multiplier * clip_for_noise / clip_used, count_std]


def epsilon(multipliers: Sequence[float], delta: float) -> float:
    """Epsilon at ``delta`` after composing one Gaussian mechanism per entry of
    ``multipliers`` (noise standard deviation over L2 sensitivity), add-or-remove-one
    neighbours, by ``dp_accounting``'s RDP accountant; ``inf`` for a multiplier of 0."""
    from dp_accounting import NeighboringRelation, dp_event, rdp

    if any(z <= 0 for z in multipliers):
        return math.inf
    accountant = rdp.RdpAccountant(neighboring_relation=NeighboringRelation.ADD_OR_REMOVE_ONE)
    for z in multipliers:
        accountant.compose(dp_event.GaussianDpEvent(float(z)))
    return float(accountant.get_epsilon(delta))


@contextmanager
def noise_seed(seed: int | None) -> Iterator[None]:
    """Flower's mechanisms draw from numpy's global generator: seed it for one release.

    ``seed``: an int in a simulation (the run's noise is reproducible and a resumed run equal
    bit for bit; anyone who knows the seed can subtract it), ``None`` in a real federation
    (fresh entropy from the operating system for every release)."""
    saved = np.random.get_state()
    np.random.seed(None if seed is None else seed % 2**32)  # numpy's legacy seeding takes 32 bits
    try:
        yield
    finally:
        if seed is not None:
            np.random.set_state(saved)
