"""The config's sections for a hostile world: simulated attackers and differential privacy."""

from __future__ import annotations

import math
from dataclasses import dataclass

from fedwsa.attacks import KINDS, attacker_count
from fedwsa.privacy import KINDS as PRIVACY_KINDS
from fedwsa.run.errors import ConfigError, check, choice


@dataclass(frozen=True)
class AttackConfig:
    """Simulated attackers among the clients (``fedwsa/attacks.py``); simulation and
    ``engine=inprocess`` only. Which clients attack is drawn from ``seeds.partition``."""

    kind: str = "none"  # none | sign_flip | scale | noise | label_flip | alie | scope
    clients: float = 0.0  # how many attack: a count (>= 1) or a fraction of num_clients (< 1)
    scale: float = 10.0  # scale: the update's factor; scope: the factor on each scoped tensor's sigma
    noise_std: float = 1.0  # noise: the standard deviation added to every weight


@dataclass(frozen=True)
class PrivacyConfig:
    """Differential privacy of the clients' updates (``fedwsa/privacy.py``, docs/privacy.md)."""

    kind: str = "none"  # none | central_fixed | central_adaptive | client_fixed | local
    noise_multiplier: float = 1.0  # central kinds: noise std over the mean's sensitivity (z)
    clipping_norm: float = 1.0  # L2 bound of each update (central_adaptive: the initial bound)
    delta: float = 1e-5  # the delta at which epsilon is reported (local: also the mechanism's)
    epsilon: float = 0.5  # local: each round's epsilon of each client's Gaussian mechanism
    target_quantile: float = 0.5  # central_adaptive: the fraction of updates left unclipped
    clip_lr: float = 0.2  # central_adaptive: the clipping norm's geometric learning rate
    count_std: float = 0.0  # central_adaptive: noise on the clipped count; 0: clients per round / 20


def check_attack(a: AttackConfig, num_clients: int) -> None:
    choice("attack.kind", a.kind, KINDS)
    check("attack.scale", a.scale > 0, "> 0", a.scale)
    check("attack.noise_std", a.noise_std >= 0, ">= 0", a.noise_std)
    n = a.clients  # NaN and inf fail every comparison here (found by tests/test_fuzz.py)
    whole_or_fraction = 0 <= n < 1 or (1 <= n < float("inf") and n == int(n))
    rule = "a count (a whole number >= 1) or a fraction (< 1) of num_clients"
    check("attack.clients", whole_or_fraction, rule, a.clients)
    count = attacker_count(num_clients, a.clients)
    check("attack.clients", count <= num_clients, f"at most num_clients={num_clients}", a.clients)
    if a.kind != "none" and count == 0:
        raise ConfigError("attack.clients", f"attack={a.kind} needs attackers: a count >= 1 or a fraction")


def check_privacy(p: PrivacyConfig, sampled: int) -> None:
    """``sampled``: clients per round (the mean's denominator)."""
    choice("privacy.kind", p.kind, PRIVACY_KINDS)

    def positive(key: str, value: float) -> None:
        check(f"privacy.{key}", math.isfinite(value) and value > 0, "a number > 0", value)

    positive("clipping_norm", p.clipping_norm)
    check("privacy.delta", 0 < p.delta < 1, "in (0, 1)", p.delta)
    positive("epsilon", p.epsilon)
    positive("clip_lr", p.clip_lr)
    check("privacy.target_quantile", 0 <= p.target_quantile <= 1, "in [0, 1]", p.target_quantile)
    check("privacy.count_std", math.isfinite(p.count_std) and p.count_std >= 0, ">= 0", p.count_std)
    if p.kind in ("none", "local"):
        return
    rule = "a number > 0 (noise; without it there is no epsilon: use privacy=none)"
    check("privacy.noise_multiplier", math.isfinite(p.noise_multiplier) and p.noise_multiplier > 0, rule,
          p.noise_multiplier)  # fmt: skip
    count_std = p.count_std or sampled / 20  # Flower's default
    if p.kind == "central_adaptive" and p.noise_multiplier >= 2 * count_std:
        raise ConfigError(
            "privacy.noise_multiplier",
            f"must be < 2 x the clipped count's noise (privacy.count_std={count_std:g}"
            f"{'' if p.count_std else f', the default {sampled} clients per round / 20'}) for Flower's "
            f"adaptive clipping, got {p.noise_multiplier:g}: raise privacy.count_std",
        )
