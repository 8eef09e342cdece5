"""Differential privacy around any strategy: Flower's DP wrappers, in fedwsa's round loop.

:class:`Private` wraps the algorithm's strategy in Flower's server-side wrapper for the
configured kind (``fedwsa/privacy.py`` says what each does), makes the clients' weights
equal (the noise is calibrated to an unweighted mean: a weight a client reports cannot
raise its influence), seeds the noise, hands the released (noised) model to the strategy
for anything else it broadcasts (FedWSA's target scope: :meth:`RoundState.released`), and
accounts for every release with ``dp-accounting``. The epsilon holds for strategies whose
new model is the mean of the replies and whose broadcasts derive from the released model
only (``Unit.dp_mean``); for the others the noise is added but no epsilon is claimed
(``None`` in ``metrics.json``). Local DP (``local``) is post-processed by any strategy.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import (
    DifferentialPrivacyClientSideFixedClipping,
    DifferentialPrivacyServerSideAdaptiveClipping,
    DifferentialPrivacyServerSideFixedClipping,
)

from fedwsa.privacy import (
    adaptive_events,
    central_noise_std,
    epsilon,
    local_noise_multiplier,
    local_noise_std,
    noise_seed,
)
from fedwsa.run.config import ExperimentConfig
from fedwsa.run.wire import METRICS, NUM_EXAMPLES
from fedwsa.train import derive_seed
from strategies.base import RoundState

SERVER_NOISE = 2**31 - 1  # the server's noise stream: derive_seed(seeds.train, round, this)


class Private(RoundState):
    """``inner`` with ``cfg.privacy``. ``accounted``: the inner strategy's release is the mean
    of the replies (its epsilon holds); ``seeded``: draw the noise from the run's seed."""

    def __init__(self, inner: RoundState, cfg: ExperimentConfig, accounted: bool, seeded: bool) -> None:
        p = self.p = cfg.privacy
        self.inner, self.m = inner, cfg.sample_size
        self.seed = cfg.seeds.train if seeded else None
        self.accounted = accounted or p.kind == "local"
        self.multipliers: list[float] = []  # the Gaussian mechanisms applied so far
        self.noise_std = local_noise_std(p.clipping_norm, p.epsilon, p.delta) if p.kind == "local" else 0.0
        self.clip = p.clipping_norm  # the bound of the last round's updates
        z, c, m = p.noise_multiplier, p.clipping_norm, self.m
        self.dp: Any = None  # Flower's wrapper (local DP: none, the clients do it)
        if p.kind == "central_fixed":
            self.dp = DifferentialPrivacyServerSideFixedClipping(inner, z, c, m)  # type: ignore[arg-type]
        elif p.kind == "client_fixed":
            self.dp = DifferentialPrivacyClientSideFixedClipping(inner, z, c, m)  # type: ignore[arg-type]
        elif p.kind == "central_adaptive":
            self.dp = DifferentialPrivacyServerSideAdaptiveClipping(
                inner, z, m, initial_clipping_norm=c, target_clipped_quantile=p.target_quantile,  # type: ignore[arg-type]
                clip_norm_lr=p.clip_lr, clipped_count_stddev=p.count_std or None,
            )  # fmt: skip
        inner.from_release = self.dp is not None

    # --- Flower's API, as the loop calls it -----------------------------------------------
    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        return (self.dp or self.inner).configure_train(server_round, arrays, config, grid)

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        replies = list(replies)
        if self.dp is None:  # local DP: the replies are noised already
            arrays, metrics = self.inner.aggregate_train(server_round, replies)
            if arrays is not None:
                self.multipliers.append(local_noise_multiplier(self.p.epsilon, self.p.delta))
            return arrays, metrics
        for r in replies:  # the noise is calibrated to the unweighted mean
            r.content[METRICS][NUM_EXAMPLES] = 1  # type: ignore[index,assignment]
        clip = self.dp.clipping_norm
        seed = None if self.seed is None else derive_seed(self.seed, server_round, SERVER_NOISE)
        with noise_seed(seed):
            arrays, metrics = self.dp.aggregate_train(server_round, replies)
        if arrays is None:
            return arrays, metrics
        z, share = self.dp.noise_multiplier, len(replies) / self.m  # fewer replies: more sensitivity
        self.noise_std = central_noise_std(z, self.dp.clipping_norm, self.m)
        self.clip = clip
        if self.p.kind == "central_adaptive":
            update, count = adaptive_events(z, clip, self.dp.clipping_norm, self.dp.clipped_count_stddev)
            self.multipliers += [update * share, count]
        else:
            self.multipliers.append(z * share)
        return self.inner.released(server_round, arrays), metrics

    # --- what the loop records --------------------------------------------------------------
    def spent(self) -> dict[str, Any]:
        """This round's privacy entries of ``metrics.json``."""
        eps = None  # no epsilon claimed for this strategy
        if self.accounted:
            eps = epsilon(self.multipliers, self.p.delta) if self.multipliers else 0.0
        return {
            "epsilon": eps,
            "delta": self.p.delta,
            "clipping_norm": self.clip,
            "noise_std": self.noise_std,
        }

    def state(self) -> dict[str, Any]:
        extra = {"privacy_multipliers": list(self.multipliers), "privacy_clip": self.clip}
        if self.p.kind == "central_adaptive":
            extra["privacy_next_clip"] = self.dp.clipping_norm
        return {**self.inner.state(), **extra}

    def restore(self, state: dict[str, Any]) -> None:
        self.inner.restore(state)
        self.multipliers = [float(z) for z in state["privacy_multipliers"]]
        self.clip = float(state["privacy_clip"])
        if self.p.kind == "central_adaptive":
            self.dp.clipping_norm = float(state["privacy_next_clip"])

    def round_record(self, server_round: int) -> dict[str, Any]:
        return self.inner.round_record(server_round)
