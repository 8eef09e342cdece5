"""Mode connectivity and multi-stage fusion: the WSA paper's second scenario.

Reference: https://arxiv.org/abs/2408.12237 and the project's ``WSA.md`` (last section).
Linear interpolation ``theta(a) = (1 - a) theta_A + a theta_B``, its loss/accuracy along a
grid of ``a``, and the barrier
``max_a [L(theta(a)) - ((1 - a) L(theta_A) + a L(theta_B))]``. Reuses the core's training
loop, regularizer, scope and fusion functions; no second copy of the math.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from fedwsa.data import Dataset
from fedwsa.models import build_model
from fedwsa.partition import partition
from fedwsa.regularizers import make_regularizer
from fedwsa.train import derive_seed, evaluate, train
from fedwsa.wsa import align_to_scope, fuse_scopes, scope_of_arrays, scoped_names

State = dict[str, Tensor]


def interpolate(a_state: Mapping[str, Tensor], b_state: Mapping[str, Tensor], a: float) -> State:
    """``(1 - a) * A + a * B`` for every tensor; ``a = 0`` and ``a = 1`` give A and B exactly."""
    return {k: (1.0 - a) * a_state[k] + a * b_state[k] for k in a_state}


def average(states: Sequence[Mapping[str, Tensor]]) -> State:
    """Plain (equal-weight) parameter average, the merge used at every fusion stage."""
    return {k: torch.stack([s[k] for s in states]).mean(0) for k in states[0]}


def barrier(values: Sequence[float] | np.ndarray, alphas: Sequence[float] | np.ndarray) -> float:
    r"""Largest gap above the straight line between the endpoints.

    .. math:: \max_a \big[v(a) - ((1-a)\,v(0) + a\,v(1))\big]

    For a loss, a positive barrier means the path climbs above the endpoints. For an
    accuracy pass ``-acc`` (so a positive value is an accuracy dip).
    """
    v, al = np.asarray(values, dtype=np.float64), np.asarray(alphas, dtype=np.float64)
    if al[0] != 0.0 or al[-1] != 1.0:
        raise ValueError("the grid of a must start at 0 and end at 1")
    return float(np.max(v - ((1 - al) * v[0] + al * v[-1])))


def align_state(state: State, names: Sequence[str], target: np.ndarray) -> State:
    """``align_to_scope`` for a torch state dict (rescale scoped tensors to ``target``)."""
    arrays = {k: v.detach().cpu().numpy() for k, v in state.items()}
    return {k: torch.from_numpy(np.asarray(v)) for k, v in align_to_scope(arrays, names, target).items()}


def evaluate_path(
    model: nn.Module,
    a_state: State,
    b_state: State,
    x: Tensor,
    y: Tensor,
    alphas: Sequence[float] | np.ndarray,
    *,
    align: tuple[Sequence[str], np.ndarray] | None = None,
) -> list[dict[str, float]]:
    """Loss and accuracy of ``theta(a)`` for each ``a``; optionally aligned to a scope first."""
    rows = []
    for a in alphas:
        state = interpolate(a_state, b_state, float(a))
        if align is not None and 0.0 < a < 1.0:
            state = align_state(state, *align)
        model.load_state_dict(state)
        loss, acc = evaluate(model, x, y)
        rows.append({"a": float(a), "loss": loss, "accuracy": acc})
    return rows


def stage_groups(n: int, mode: str) -> list[list[int]]:
    """Indices merged together at one stage: ``all`` at once, or ``pairwise`` (odd one carried)."""
    if mode == "all":
        return [list(range(n))]
    if mode == "pairwise":
        return [list(range(i, min(i + 2, n))) for i in range(0, n, 2)]
    raise ValueError(f"unknown fusion mode {mode!r}; expected all or pairwise")


def fused_target(scopes: Sequence[np.ndarray], method: str) -> np.ndarray:
    """Equal-weight fusion of model scopes into the next stage's target."""
    return fuse_scopes(scopes, [1.0] * len(scopes), method)


@dataclass(frozen=True)
class ConnectSettings:
    """What :func:`run_connect` needs besides the data (built from the Hydra config)."""

    model: str
    hidden: int
    seed: int
    num_models: int = 2
    same_init: bool = False
    subsets: str = "full"  # full | halves | dirichlet
    alpha: float = 0.5
    epochs: int = 2
    batch_size: int = 64
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 0.0
    wsa_lambda: float = 0.1
    distance: str = "kl"
    normalize: str = "none"  # none | per_weight (fedwsa.wsa.NORMALIZATIONS)
    target: str = "init"  # init | fused
    fusion: str = "mixture"
    grid_points: int = 21
    stages: str = "all"  # all | pairwise
    stage_epochs: int = 1
    align: bool = False
    baselines: tuple[str, ...] = ()  # besides plain and wsa: prox (an L2 pull to the start) | wd
    prox_mu: float = 0.01  # prox: (mu / 2) ||w - w_start||^2, the start being each model's initialisation
    wd: float = 5e-4  # wd: the weight decay of that variant (the others use weight_decay)
    stop_at: float = 0.0  # > 0: each model stops at the first epoch whose test accuracy reaches it


BASELINES: tuple[str, ...] = ("prox", "wd")


def _subsets(s: ConnectSettings, labels: np.ndarray) -> list[np.ndarray]:
    if s.subsets == "full":
        return [np.arange(len(labels))] * s.num_models
    kind = "iid" if s.subsets == "halves" else "dirichlet"
    return partition(labels, kind, s.num_models, s.seed, alpha=s.alpha)


def _train(
    model: nn.Module,
    state: State,
    x: Tensor,
    y: Tensor,
    s: ConnectSettings,
    epochs: int,
    target: np.ndarray | None,
    seed: int,
    variant: str = "plain",
    test: tuple[Tensor, Tensor] | None = None,
) -> tuple[State, bool, int]:
    """Train from ``state`` as ``variant`` says (``wsa`` toward ``target``; ``prox`` pulled to
    ``state``; ``wd`` with weight decay ``s.wd``; ``plain``); every variant sees the same batches.
    With ``s.stop_at`` and ``test``: stop after the first epoch whose test accuracy reaches it.
    The new state, whether it and its training loss stayed finite, and the epochs trained."""
    model.load_state_dict(state)
    names = scoped_names(model)
    reg = make_regularizer(
        model,
        proximal_mu=s.prox_mu if variant == "prox" else 0.0,  # anchored at ``state``: loaded above
        wsa_lambda=s.wsa_lambda if target is not None else 0.0,
        target=target,
        names=names,
        distance=s.distance,
        normalize=s.normalize,
    )
    done = [epochs]

    def reached(epoch: int) -> bool:
        assert test is not None
        done[0] = epoch
        return evaluate(model, *test)[1] >= s.stop_at

    torch.manual_seed(seed)
    result = train(
        model,
        x,
        y,
        epochs=epochs,
        lr=s.lr,
        batch_size=s.batch_size,
        momentum=s.momentum,
        weight_decay=s.wd if variant == "wd" else s.weight_decay,
        regularizer=reg,
        generator=torch.Generator().manual_seed(seed),
        stop=reached if s.stop_at > 0 and test is not None else None,
    )
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return state, finite(state) and math.isfinite(result.loss), done[0]


def finite(state: Mapping[str, Tensor]) -> bool:
    """Every floating-point tensor of ``state`` is finite (no NaN, no Inf)."""
    return all(bool(torch.isfinite(v).all()) for v in state.values() if v.is_floating_point())


def run_connect(s: ConnectSettings, ds: Dataset) -> dict[str, Any]:
    """Train ``num_models`` models without and with WSA, walk the path, fuse in stages.

    Both variants start from the same initialisations and see the same batches; they
    differ only by the WSA term toward the shared target. Returns plain data (JSON-able).
    """
    model = build_model(s.model, ds.input_shape, ds.num_classes, s.hidden)
    names = scoped_names(model)
    inits = []
    for k in range(s.num_models):
        torch.manual_seed(derive_seed(s.seed, 0 if s.same_init else k))
        inits.append(build_model(s.model, ds.input_shape, ds.num_classes, s.hidden).state_dict())
    init_scopes = [scope_of_state(i, names) for i in inits]
    target0 = init_scopes[0] if s.target == "init" else fused_target(init_scopes, s.fusion)
    subsets = [torch.from_numpy(i) for i in _subsets(s, ds.y_train.numpy())]
    alphas = np.linspace(0.0, 1.0, s.grid_points)
    out: dict[str, Any] = {"layers": names, "target": target0.tolist(), "alphas": alphas.tolist()}
    variants = [("plain", None), ("wsa", target0), *((b, None) for b in s.baselines)]
    for variant, target in variants:
        trained = [
            _train(
                model,
                inits[k],
                ds.x_train[subsets[k]],
                ds.y_train[subsets[k]],
                s,
                s.epochs,
                target,
                derive_seed(s.seed, 1, k),
                variant,
                (ds.x_test, ds.y_test),
            )
            for k in range(s.num_models)
        ]
        states = [st for st, _, _ in trained]
        diverged = [k for k, (_, ok, _) in enumerate(trained) if not ok]
        if diverged:  # no path, barrier or fusion of a model that is not a number
            out[variant] = {"diverged": diverged, "path": None, "barrier_loss": None,
                            "barrier_accuracy": None, "scopes": None, "stages": []}  # fmt: skip
            continue
        align = (
            (names, fused_target([scope_of_state(st, names) for st in states[:2]], s.fusion))
            if s.align
            else None
        )
        path = evaluate_path(model, states[0], states[1], ds.x_test, ds.y_test, alphas, align=align)
        mid = interpolate(states[0], states[1], 0.5)
        out[variant] = {
            "diverged": [],
            "epochs": [e for _, _, e in trained],
            "path": path,
            "barrier_loss": barrier([r["loss"] for r in path], alphas),
            "barrier_accuracy": barrier([-r["accuracy"] for r in path], alphas),
            "scopes": {
                "A": scope_of_state(states[0], names).tolist(),
                "B": scope_of_state(states[1], names).tolist(),
                "mid": scope_of_state(mid, names).tolist(),
            },
            "stages": _multistage(model, states, subsets, ds, s, names, variant),
        }
    return out


def _multistage(
    model: nn.Module,
    states: list[State],
    subsets: list[Tensor],
    ds: Dataset,
    s: ConnectSettings,
    names: list[str],
    variant: str,
) -> list[dict[str, Any]]:
    """Merge in stages; between stages each merged model trains on its group's data, as its
    variant trains (WSA: toward the fusion of its members' scopes; prox: pulled to the merged
    model; wd: with weight decay)."""
    stages = []
    members = [[k] for k in range(len(states))]
    while len(states) > 1:
        merged, merged_members = [], []
        for g in stage_groups(len(states), s.stages):
            avg = average([states[i] for i in g])
            model.load_state_dict(avg)
            loss, acc = evaluate(model, ds.x_test, ds.y_test)
            target = fused_target([scope_of_state(states[i], names) for i in g], s.fusion)
            merged.append((avg, target, loss, acc))
            merged_members.append(sorted(k for i in g for k in members[i]))
        stages.append(
            {"models": merged_members, "accuracy": [m[3] for m in merged], "loss": [m[2] for m in merged]}
        )
        if len(merged) > 1:  # retrain each merged model before the next merge
            data = [torch.cat([subsets[k] for k in mem]).unique() for mem in merged_members]
            retrained = [
                _train(
                    model,
                    avg,
                    ds.x_train[d],
                    ds.y_train[d],
                    s,
                    s.stage_epochs,
                    target if variant == "wsa" else None,
                    derive_seed(s.seed, 2 + len(stages), j),
                    variant,
                )
                for j, ((avg, target, _, _), d) in enumerate(zip(merged, data, strict=True))
            ]
            states = [st for st, _, _ in retrained]
            stages[-1]["diverged_in_retraining"] = [j for j, (_, ok, _) in enumerate(retrained) if not ok]
        else:
            states = [merged[0][0]]
        members = merged_members
    return stages


def scope_of_state(state: Mapping[str, Tensor], names: Sequence[str]) -> np.ndarray:
    """Scope ``(L, 2)`` of the named tensors of a state dict."""
    return scope_of_arrays({n: state[n].detach().cpu().numpy() for n in names}, names)
