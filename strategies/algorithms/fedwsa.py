"""FedWSA: FedAvg that broadcasts a target scope and fuses the clients' scopes.

Weight Scope Alignment, https://arxiv.org/abs/2408.12237, as defined in the project's
``WSA.md``: clients train toward the target scope ``T_t``; the server averages the
parameters like FedAvg and fuses the clients' scopes into ``T_{t+1}``. Each client's scope
is computed here, from the parameters it sent: a client cannot move the target by
reporting a scope its parameters do not have.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg

from fedwsa.moving_target import curvatures, moving_target, shrink_factor
from fedwsa.privacy import CENTRAL
from fedwsa.run.config import ConfigError, ExperimentConfig
from fedwsa.run.factory import new_model
from fedwsa.run.wire import ARRAYS, METRICS, NUM_EXAMPLES
from fedwsa.wsa import (
    DISTANCES,
    FUSIONS,
    NORMALIZATIONS,
    align_to_scope,
    encode_wsa,
    model_scope,
    model_stable_lambda,
    next_target,
    scope_of_arrays,
    scoped_names,
)
from strategies.base import Knobs, RoundState, Setup, Unit, knob


@dataclass(frozen=True)
class Settings(Knobs):
    wsa_lambda: float = 1.0  # the regularizer's strength; chosen on a validation split, docs/RESULTS.md
    distance: str = "kl"  # kl | w2
    fusion: str = "mean"  # mean | mixture | global | median | trimmed (fedwsa.wsa.next_target)
    fusion_trim: float = 0.2  # fusion=trimmed: the fraction cut at each end
    align_global: bool = False  # rescale the averaged model to the fused scope
    scope_all: bool = False  # also scope biases (default: tensors with ndim >= 2)
    wsa_normalize: str = "none"  # none | per_weight (one lambda, one pull per weight)
    target_rule: str = "fused"  # fused (the fused scope) | moving (follows the clients' growth)

    def check(self, cfg: ExperimentConfig) -> None:
        knob("wsa_lambda", self.wsa_lambda >= 0, ">= 0", self.wsa_lambda)
        knob("fusion_trim", 0 <= self.fusion_trim < 0.5, "in [0, 0.5)", self.fusion_trim)
        for key, allowed in (("distance", DISTANCES), ("fusion", FUSIONS), ("wsa_normalize", NORMALIZATIONS),
                             ("target_rule", ("fused", "moving"))):  # fmt: skip
            value = getattr(self, key)
            knob(key, value in allowed, f"one of {', '.join(allowed)}", value)
        if cfg.privacy.kind in CENTRAL and self.fusion != "global":
            raise ConfigError(
                "strategy.fusion",
                f"privacy={cfg.privacy.kind} keeps the clients' own parameters private, so the target "
                f"cannot fuse their scopes (fusion={self.fusion}): use strategy.fusion=global (the "
                "scope of the privatised model)",
            )


class FedWSA(RoundState, FedAvg):
    """FedAvg plus a target scope: sent in ``configure_train``, updated in ``aggregate_train``.

    Parameters
    ----------
    initial_target : (L, 2) array, the scope of the initial model (``T_1``).
    names : the scoped parameter names, in the order of the scope rows.
    wsa_lambda, distance, scope_all, wsa_normalize : the clients' regularizer (sent every round).
    fusion : ``mean``, ``mixture``, ``global``, ``median`` or ``trimmed`` (see
        ``fedwsa.wsa.next_target``); ``fusion_trim`` : ``trimmed``'s cut at each end.
    align_global : rescale the averaged model's scoped tensors to the fused scope.
    **kwargs : passed to Flower's ``FedAvg``.
    """

    def __init__(
        self,
        *,
        initial_target: np.ndarray,
        names: Sequence[str],
        wsa_lambda: float = 1.0,
        distance: str = "kl",
        scope_all: bool = False,
        wsa_normalize: str = "none",
        fusion: str = "mean",
        fusion_trim: float = 0.2,
        moving: dict[str, Any] | None = None,
        align_global: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.target = np.asarray(initial_target, dtype=np.float64)
        self.names = list(names)
        self.wsa_lambda, self.distance, self.scope_all = wsa_lambda, distance, scope_all
        self.wsa_normalize = wsa_normalize
        self.fusion, self.fusion_trim = fusion, fusion_trim
        self.moving = moving  # target_rule=moving: the layers' sizes, lr, momentum, mean local steps
        self.align_global = align_global
        self.sent: dict[int, np.ndarray] = {}  # round -> target broadcast in that round

    def state(self) -> dict[str, Any]:
        """What a checkpoint keeps: the target scope for the next round."""
        return {"target": self.target.tolist()}

    def restore(self, state: dict[str, Any]) -> None:
        self.target = np.asarray(state["target"], dtype=np.float64)

    def round_record(self, server_round: int) -> dict[str, Any]:
        sent = self.sent.get(server_round)
        return {"target": None if sent is None else sent.tolist()}

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Add the WSA settings and the current target scope to the round's config, then
        sample as FedAvg."""
        config.update(
            encode_wsa(self.wsa_lambda, self.distance, self.scope_all, self.target, self.wsa_normalize)
        )
        self.sent[server_round] = self.target.copy()
        return super().configure_train(server_round, arrays, config, grid)

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Average as FedAvg, fuse the client scopes (computed from their parameters) into
        the next target, optionally align."""
        good = [m for m in replies if not m.has_error()]
        arrays, metrics = super().aggregate_train(server_round, good)
        if arrays is None or self.from_release:  # privacy: the target comes from the release
            return arrays, metrics
        scopes = [self._scope(m.content[ARRAYS]) for m in good]  # type: ignore[arg-type]
        weights = [float(m.content[METRICS][NUM_EXAMPLES]) for m in good]  # type: ignore[index,arg-type]
        params = {k: v.numpy() for k, v in arrays.items()}
        fused = next_target(
            self.fusion, scopes, weights, scope_of_arrays(params, self.names), self.fusion_trim
        )
        return self._advance(fused, params, arrays), metrics

    def released(self, server_round: int, arrays: ArrayRecord) -> ArrayRecord:
        """With differential privacy: the next target is the released model's scope (the
        ``global`` fusion; the clients' own scopes are not private)."""
        params = {k: v.numpy() for k, v in arrays.items()}
        return self._advance(scope_of_arrays(params, self.names), params, arrays)

    def _advance(self, fused: np.ndarray, params: dict[str, np.ndarray], arrays: ArrayRecord) -> ArrayRecord:
        """Make ``fused`` the next target (``target_rule=moving``: moved on from it) and
        optionally align the new model to it."""
        if self.moving is not None:  # undo the pull's shrinking of the clients' drift
            m = self.moving
            h_mu, h_sigma = curvatures(
                self.target, m["sizes"], self.distance, self.wsa_normalize, self.wsa_lambda
            )
            k_mu, k_sigma = (shrink_factor(h, m["lr"], m["momentum"], m["steps"]) for h in (h_mu, h_sigma))
            fused = moving_target(self.target, fused, k_mu, k_sigma)
        self.target = fused
        if self.align_global:
            aligned = align_to_scope(params, self.names, self.target)
            arrays = ArrayRecord({k: Array(np.ascontiguousarray(v)) for k, v in aligned.items()})
        return arrays

    def _scope(self, record: ArrayRecord) -> np.ndarray:
        return scope_of_arrays({n: record[n].numpy() for n in self.names}, self.names)


def build(setup: Setup, s: Settings) -> FedWSA:
    """Target ``T_1``: the initial model's scope."""
    moving = None
    if s.target_rule == "moving":
        params = dict(setup.model.named_parameters())
        steps, sizes = setup.steps(), list(setup.sizes)
        if not sizes:
            raise ValueError("target_rule=moving needs the partition sizes (the clients' local steps)")
        mean_steps = sum(k * n for k, n in zip(steps, sizes, strict=True)) / sum(sizes)
        moving = {"sizes": [params[n].numel() for n in setup.names], "lr": setup.cfg.lr,
                  "momentum": setup.cfg.momentum, "steps": mean_steps}  # fmt: skip
    return FedWSA(
        initial_target=model_scope(setup.model, setup.names), names=setup.names, wsa_lambda=s.wsa_lambda,
        distance=s.distance, scope_all=s.scope_all, wsa_normalize=s.wsa_normalize, fusion=s.fusion,
        align_global=s.align_global, fusion_trim=s.fusion_trim, moving=moving, **setup.flower,
    )  # fmt: skip


def warnings(cfg: ExperimentConfig, s: Settings) -> list[str]:
    """One line when lambda is beyond the range where SGD with momentum is stable on the WSA
    term near the initial target (``fedwsa.wsa.stable_lambda``). A warning, not a refusal:
    the target moves after round 1, the bound ignores the task loss, and a study must be
    able to run past the edge to find it."""
    if s.wsa_lambda <= 0:
        return []
    model = new_model(cfg)
    names = scoped_names(model, s.scope_all)
    bound, worst = model_stable_lambda(model, names, s.distance, s.wsa_normalize, cfg.lr, cfg.momentum)
    if s.wsa_lambda < bound:
        return []
    fix = "" if s.wsa_normalize == "per_weight" else ", or set strategy.wsa_normalize=per_weight"
    return [
        f"strategy.wsa_lambda={s.wsa_lambda:g} is beyond the stable range of the WSA term for SGD at "
        f"lr={cfg.lr:g}, momentum={cfg.momentum:g} (lambda < {bound:.3g} at the initial target; most "
        f"curved: {worst}): expect its sigma to oscillate or diverge; lower wsa_lambda or lr{fix}"
    ]


UNIT = Unit(
    "fedwsa", "FedWSA: FedAvg with Weight Scope Alignment toward a fused target scope (shared/design/WSA.md)",
    Settings, build, color="tab:red", strength=("wsa_lambda",), warnings=warnings, dp_mean=True,
)  # fmt: skip
