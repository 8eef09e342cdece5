"""What the round loop asks of every strategy beyond Flower's API, and what a strategy's
unit is given to build one.

Each strategy sends its own knobs in ``configure_train`` (Flower's FedProx its
``proximal-mu``; FedWSA its lambda, distance and target scope), so the loop sends only the
local-training settings all strategies share. For checkpoints each one declares what later
rounds depend on (:meth:`RoundState.state`) and takes it back (:meth:`RoundState.restore`):
there is no default, so a strategy that keeps state across rounds cannot forget it (a
stateless one says so by mixing in :class:`Stateless`); ``tests/test_algorithms.py`` resumes
every registered strategy from a mid-run checkpoint and compares bit for bit.
:meth:`RoundState.round_record` is what it adds to the round's scope record.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.serverapp import Grid
from torch import nn

from fedwsa.run.config import ConfigError, ExperimentConfig
from fedwsa.train import local_step_count
from strategies.grid import PartitionGrid


class RoundState:
    """Mixed into each strategy the loop drives, before Flower's strategy class (whose
    ``configure_train`` and ``aggregate_train`` the loop calls)."""

    if TYPE_CHECKING:

        def configure_train(
            self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
        ) -> Iterable[Message]: ...

        def aggregate_train(
            self, server_round: int, replies: Iterable[Message]
        ) -> tuple[ArrayRecord | None, MetricRecord | None]: ...

    def state(self) -> dict[str, Any]:
        """What a checkpoint must keep for the rounds after it (tensors and plain values;
        keys unique to the strategy)."""
        raise NotImplementedError(f"{type(self).__name__} must declare its state (or mix in Stateless)")

    def restore(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`state` as saved in a checkpoint."""
        raise NotImplementedError(f"{type(self).__name__} must declare how it restores its state")

    def round_record(self, server_round: int) -> dict[str, Any]:
        """What this strategy adds to the round's record in ``scopes.json``."""
        return {"target": None}

    # Differential privacy (``strategies/privacy.py``) sets this: what the strategy sends
    # besides the model must then come from the released (noised) model, in ``released``.
    from_release: bool = False

    def released(self, server_round: int, arrays: ArrayRecord) -> ArrayRecord:
        """The model the privacy mechanism released this round; what the strategy derives
        from it (FedWSA: its next target) happens here. Returns the model to use."""
        return arrays


class Stateless(RoundState):
    """A strategy whose every round depends only on the model it is given: nothing to keep."""

    def state(self) -> dict[str, Any]:
        return {}

    def restore(self, state: dict[str, Any]) -> None:
        pass


def no_metrics(records: list[RecordDict], weight_key: str) -> MetricRecord:
    """The round loop records the clients' metrics from the checked replies itself."""
    return MetricRecord()


def tensors(arrays: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """Arrays as tensors for a checkpoint (exact; copies)."""
    return {k: torch.from_numpy(np.array(v, copy=True)) for k, v in arrays.items()}


def arrays(state: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """Inverse of :func:`tensors`."""
    return {k: v.numpy() for k, v in state.items()}


@dataclass
class Setup:
    """What a unit's ``build`` gets: the experiment, its initial model and scoped names, and
    the round loop's grid and partition sizes (for strategies that keep per-client state or
    need each client's step count)."""

    cfg: ExperimentConfig
    model: nn.Module
    names: list[str]
    grid: PartitionGrid | None = None
    sizes: Sequence[int] = ()
    flower: dict[str, Any] = field(init=False)  # what every Flower strategy is built with

    def __post_init__(self) -> None:
        # sampling is the grid's (strategies.grid): a strategy sends to every node it sees
        self.flower = dict(
            fraction_train=1.0, fraction_evaluate=0.0, min_train_nodes=1, min_available_nodes=1,
            train_metrics_aggr_fn=no_metrics,
        )  # fmt: skip

    def steps(self) -> list[int]:
        """Each partition's local SGD steps ``K_i``, computed here (never reported by a client)."""
        c = self.cfg
        return [local_step_count(n, c.batch_size, c.epochs, c.local_steps) for n in self.sizes]

    def need_grid(self, name: str) -> PartitionGrid:
        if self.grid is None:
            raise ValueError(f"{name} needs the round loop's grid and the partition sizes")
        return self.grid


def knob(key: str, ok: bool, rule: str, value: Any) -> None:
    """A settings check: ``strategy.<key>`` must be ``rule``."""
    if not ok:
        raise ConfigError(f"strategy.{key}", f"must be {rule}, got {value!r}")


@dataclass(frozen=True)
class Knobs:
    """Base of each unit's settings class: a frozen dataclass whose fields are the knobs
    (``strategy.<field>`` in the config; type and default from the field), and ``check``,
    which may look at the whole experiment (Krum needs enough clients per round)."""

    def check(self, cfg: ExperimentConfig) -> None:
        """Raise ``ConfigError`` (:func:`knob`) for a bad value; nothing to check by default."""


@dataclass(frozen=True)
class Unit:
    """One algorithm: everything the launcher, the loop, the report and the plots know of it.

    ``settings``: its :class:`Knobs` class; ``build(setup, settings)``: its strategy (a
    :class:`RoundState` and a Flower strategy); ``color``: its colour in figures;
    ``strength``: the knobs every report label shows (FedProx's mu); ``dp_mean``: its new
    model is the (weighted) mean of the replies' models and nothing else it sends depends on
    them, so central DP's epsilon holds for it (``strategies/privacy.py``); ``client_state``: how
    many model-sized float32 arrays the server keeps per client (checked against the memory
    before a run starts); ``warnings(cfg, settings)``: lines the launcher prints (not refusals).
    """

    name: str
    title: str
    settings: type[Knobs]
    build: Any  # Callable[[Setup, Knobs], RoundState]
    color: str = "black"
    strength: tuple[str, ...] = ()
    dp_mean: bool = False
    client_state: int = 0
    warnings: Any = None  # Callable[[ExperimentConfig, Knobs], list[str]] | None
