"""Test-only fault injection: make chosen clients misbehave, to test the server's defences.

``test_fault`` in the config is a comma-separated list of ``PARTITION:KIND`` (``PARTITION``
may be ``all``), e.g. ``test_fault=1:nan_params,2:raise``. It is empty in real runs.
Each kind breaks one thing the server must catch (see ``fedwsa.run.wire.check_reply``).
"""

from __future__ import annotations

import dataclasses
import os
import time

import numpy as np
import torch
from torch import Tensor

from fedwsa.run.wire import TrainReply

KINDS: tuple[str, ...] = (
    "raise", "nan_params", "inf_params", "wrong_shape", "missing_param", "extra_param",
    "zero_examples", "negative_examples", "nan_scope", "scope_layers",
)  # fmt: skip


DELAY_ENV = "FEDWSA_TEST_CLIENT_DELAY_S"


def test_delay() -> None:
    """TEST ONLY: sleep ``$FEDWSA_TEST_CLIENT_DELAY_S`` seconds before training, so a test
    can kill a run in the middle of a round. An environment variable, not a config key,
    because it must not change the experiment (a resumed run must match the config)."""
    delay = float(os.environ.get(DELAY_ENV, "0") or 0)
    if delay > 0:
        time.sleep(delay)


class InjectedFault(RuntimeError):
    """Raised by a client told to fail (``KIND`` ``raise``)."""


def parse_faults(spec: str) -> dict[int | str, str]:
    """``"1:nan_params,all:raise"`` -> ``{1: "nan_params", "all": "raise"}``; ValueError if bad."""
    faults: dict[int | str, str] = {}
    for item in filter(None, (s.strip() for s in spec.split(","))):
        who, _, kind = item.partition(":")
        if kind not in KINDS:
            raise ValueError(f"{item!r}: expected PARTITION:KIND with KIND one of {', '.join(KINDS)}")
        if who == "all":
            faults["all"] = kind
        elif who.isdigit():
            faults[int(who)] = kind
        else:
            raise ValueError(f"{item!r}: PARTITION must be a partition id or 'all'")
    return faults


def inject(
    spec: str, partition_id: int, state: dict[str, Tensor], reply: TrainReply
) -> tuple[dict[str, Tensor], TrainReply]:
    """Apply this client's fault from ``spec`` (if any) to its trained state and reply."""
    faults = parse_faults(spec)
    kind = faults.get(partition_id, faults.get("all"))
    if kind is None:
        return state, reply
    state = dict(state)
    first = next(k for k, v in state.items() if v.is_floating_point())
    if kind == "raise":
        raise InjectedFault(f"client {partition_id}: injected fault (test_fault)")
    if kind == "nan_params":
        state[first] = torch.full_like(state[first], float("nan"))
    elif kind == "inf_params":
        state[first] = state[first].clone().fill_(float("inf"))
    elif kind == "wrong_shape":
        state[first] = torch.zeros(*state[first].shape[:-1], state[first].shape[-1] + 1)
    elif kind == "missing_param":
        del state[first]
    elif kind == "extra_param":
        state["injected.weight"] = torch.zeros(3)
    elif kind == "zero_examples":
        reply = dataclasses.replace(reply, num_examples=0)
    elif kind == "negative_examples":
        reply = dataclasses.replace(reply, num_examples=-reply.num_examples)
    elif kind == "nan_scope":
        reply = dataclasses.replace(reply, scope=np.full_like(reply.scope, np.nan))
    elif kind == "scope_layers":
        reply = dataclasses.replace(reply, scope=reply.scope[:-1])
    return state, reply
