"""Every client-side term a train message can ask for, and the one call that builds them.

:data:`CLIENT_TERMS` is the list (each term lives in its algorithm's core module:
``fedwsa.fedprox``, ``fedwsa.wsa``, ``fedwsa.scaffold``, ``fedwsa.feddyn``, ``fedwsa.moon``);
:func:`build_regularizer` is what a client calls with the message's settings and arrays. No
term asked for returns ``None``: plain local SGD, FedAvg's (and every server-only
algorithm's) local step. To add a client term: write its module (a
:class:`fedwsa.terms.Regularizer` and a :class:`fedwsa.terms.ClientTerm`) and list it here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from fedwsa import feddyn, fedprox, moon, scaffold, wsa
from fedwsa.fedprox import Proximal, proximal_term
from fedwsa.terms import Arrays, Regularizer, Sum
from fedwsa.wsa import make_wsa

CLIENT_TERMS = (fedprox.TERM, wsa.TERM, scaffold.TERM, feddyn.TERM, moon.TERM)

__all__ = [
    "CLIENT_TERMS",
    "Regularizer",
    "build_regularizer",
    "make_regularizer",
    "make_wsa",
    "proximal_term",
]


def build_regularizer(
    model: nn.Module,
    config: Mapping[str, Any],
    arrays: Arrays | None = None,
    device: torch.device | None = None,
) -> Regularizer | None:
    """The sum of the terms the message asks for (in :data:`CLIENT_TERMS`' order), or ``None``.

    Call it after loading the global parameters into ``model``: proximal terms are
    anchored at them."""
    dev = device or torch.device("cpu")
    terms = [
        t for t in (term.build(model, config, arrays or {}, dev) for term in CLIENT_TERMS) if t is not None
    ]
    if not terms:
        return None
    return terms[0] if len(terms) == 1 else Sum(terms)


def make_regularizer(
    model: nn.Module,
    *,
    proximal_mu: float = 0.0,
    wsa_lambda: float = 0.0,
    target: np.ndarray | None = None,
    names: Sequence[str] = (),
    distance: str = "kl",
    normalize: str = "none",
    correction: Mapping[str, Tensor] | None = None,
) -> Regularizer | None:
    """A proximal pull, WSA and SCAFFOLD's correction by keyword, for code that trains
    without a server (the merging tool, benchmarks); ``None`` when all are off."""
    terms: list[Regularizer] = []
    if proximal_mu > 0:
        terms.append(Proximal(model, proximal_mu))
    if wsa_lambda > 0:
        if target is None:
            raise ValueError("wsa_lambda > 0 needs a target scope")
        terms.append(make_wsa(target, names, wsa_lambda, distance, normalize))
    if correction:
        terms.append(scaffold.ControlVariate(correction))
    if not terms:
        return None
    return terms[0] if len(terms) == 1 else Sum(terms)
