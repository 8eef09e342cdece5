"""Every algorithm by name: the one list the config, the launcher, the round loop, the
report and the plots read, so that none of them names an algorithm.

An algorithm is a :class:`strategies.base.Unit` in its own module of
``strategies/algorithms/`` (its settings, its strategy, its state), plus, where it changes
local training, its client term in the core (``fedwsa.regularizers.CLIENT_TERMS``). A user's
own algorithm needs no change here: ``strategy.name=my_pkg.my_algo`` imports that module and
takes its ``UNIT`` (docs/algorithms.md, "Adding an algorithm").
"""

from __future__ import annotations

import dataclasses
import importlib
import os
from collections.abc import Sequence
from typing import Any

from torch import nn

from fedwsa.run.config import ConfigError, ExperimentConfig, StrategyConfig, build_dataclass
from strategies.algorithms import (
    bulyan,
    fedadagrad,
    fedadam,
    fedavg,
    fedavgm,
    feddyn,
    fedmedian,
    fednova,
    fedprox,
    fedtrimmedavg,
    fedwsa,
    fedyogi,
    krum,
    moon,
    multikrum,
    qfedavg,
    scaffold,
)
from strategies.base import Knobs, RoundState, Setup, Unit
from strategies.grid import PartitionGrid

UNITS: dict[str, Unit] = {
    u.name: u
    for u in (
        fedavg.UNIT, fedprox.UNIT, fedwsa.UNIT,  # the comparison's first three
        scaffold.UNIT, fednova.UNIT, feddyn.UNIT, moon.UNIT,  # Non-IID baselines
        fedavgm.UNIT, fedadam.UNIT, fedyogi.UNIT, fedadagrad.UNIT, qfedavg.UNIT,  # Flower: server optimisers
        fedmedian.UNIT, fedtrimmedavg.UNIT, krum.UNIT, multikrum.UNIT, bulyan.UNIT,  # Flower: robust
    )
}  # fmt: skip


def unit(name: str) -> Unit:
    """The registered unit ``name``, or the ``UNIT`` of the importable module ``name`` (a
    dotted name: the user's own algorithm)."""
    if name in UNITS:
        return UNITS[name]
    if "." not in name:
        raise ConfigError(
            "strategy.name",
            f"unknown algorithm {name!r}; one of {', '.join(UNITS)}, or your own module that defines UNIT "
            "(strategy.name=my_pkg.my_algo)",
        )
    try:
        module = importlib.import_module(name)
    except ImportError as e:
        raise ConfigError("strategy.name", f"cannot import {name!r} ({e}); is it on PYTHONPATH?") from None
    found = getattr(module, "UNIT", None)
    if not isinstance(found, Unit):
        raise ConfigError("strategy.name", f"module {name!r} defines no UNIT (a strategies.base.Unit)")
    return found


def settings(cfg: ExperimentConfig) -> Knobs:
    """``cfg.strategy``'s knobs as its unit's settings, typed and checked (``ConfigError``
    names the key); knobs not given take the settings' defaults."""
    u = unit(cfg.strategy.name)
    s: Knobs = build_dataclass(u.settings, dict(cfg.strategy.knobs), "strategy.")
    s.check(cfg)
    return s


def check(cfg: ExperimentConfig, model: nn.Module | None = None) -> tuple[Unit, Knobs]:
    """What the launcher checks before anything starts: the algorithm, its knobs, and that
    the per-client state it keeps on the server fits in this machine's memory."""
    u, s = unit(cfg.strategy.name), settings(cfg)
    if u.client_state and model is not None:
        need = u.client_state * cfg.num_clients * sum(p.numel() * 4 for p in model.parameters())
        total = machine_memory()
        if total and need > total / 2:
            raise ConfigError(
                "strategy.name",
                f"{u.name} keeps {u.client_state} copy of the model's parameters per client on the server: "
                f"{cfg.num_clients} clients need {need / 2**30:.1f} GiB, more than half of this machine's "
                f"{total / 2**30:.1f} GiB of memory; use fewer clients or a smaller model",
            )
    return u, s


def machine_memory() -> int:
    """This machine's memory in bytes (0 where the system does not say)."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 0


def canonical(cfg: ExperimentConfig) -> ExperimentConfig:
    """``cfg`` with every knob of its algorithm, typed and defaulted (``strategy.wsa_lambda=1``
    and ``=1.0`` are one config, and ``config.json`` lists every knob the run used)."""
    knobs = dataclasses.asdict(settings(cfg))
    return dataclasses.replace(cfg, strategy=StrategyConfig(cfg.strategy.name, **knobs))


def scope_all(cfg: ExperimentConfig) -> bool:
    """Whether the scope records cover biases too (a ``scope_all`` knob, FedWSA's)."""
    return bool(getattr(settings(cfg), "scope_all", False))


def build_strategy(
    cfg: ExperimentConfig, model: nn.Module, names: list[str], grid: PartitionGrid | None = None,
    sizes: Sequence[int] = (),
) -> RoundState:  # fmt: skip
    """The strategy of ``cfg`` (``model``: the initial model; ``names``: its scoped
    parameters; ``grid`` and ``sizes``: the round loop's, for per-client strategies)."""
    u = unit(cfg.strategy.name)
    strategy: RoundState = u.build(Setup(cfg, model, names, grid, sizes), settings(cfg))
    return strategy


def color(name: str) -> str:
    """The algorithm's colour in figures (black for one not registered)."""
    return UNITS[name].color if name in UNITS else "black"


def strength(name: str) -> tuple[str, ...]:
    """The knobs every report label of this algorithm shows."""
    return UNITS[name].strength if name in UNITS else ()


def defaults(name: str) -> dict[str, Any]:
    """The algorithm's knobs and their defaults (what ``strategy/<name>.yaml`` lists)."""
    return {f.name: f.default for f in dataclasses.fields(UNITS[name].settings)}
