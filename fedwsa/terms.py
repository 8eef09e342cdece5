"""What a client-side algorithm is to the one training loop: a :class:`Regularizer` (a term
added to the task loss) and a :class:`ClientTerm` (how the term is read from a train
message).

Each algorithm that changes local training defines both in its own core module
(``fedwsa.fedprox``, ``fedwsa.wsa``, ``fedwsa.scaffold``, ``fedwsa.feddyn``, ``fedwsa.moon``); the list of
them is ``fedwsa.regularizers.CLIENT_TERMS``. The server side of each algorithm (its
strategy) is ``strategies/algorithms/<name>.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

Arrays = Mapping[str, Mapping[str, Tensor]]
"""The train message's extra array records (beside the model), by record name."""


class Regularizer:
    """A term added to the task loss. Two equivalent ways to apply it:

    - ``reg(model)``: the term as a differentiable scalar (autograd; the reference);
    - ``reg.add_grad(model)``: after ``loss.backward()`` on the task loss, add the term's
      gradient to every ``p.grad`` in one fused pass, from its closed form, like weight
      decay. This is what training uses (``fedwsa.train.train(fused=True)``).
    """

    def __call__(self, model: nn.Module) -> Tensor:
        raise NotImplementedError

    def add_grad(self, model: nn.Module) -> None:
        raise NotImplementedError

    def batch_term(self, model: nn.Module, xb: Tensor) -> Tensor | None:
        """A term that depends on the batch too (MOON's), added to the task loss before its
        backward, right after ``model(xb)``; ``None``: none (every weight-only term)."""
        return None

    def close(self) -> None:
        """Undo what the term did to the model (hooks); called after the round's training."""


def grad_of(p: Tensor) -> Tensor:
    """``p.grad``, created as zeros when the task loss left it empty."""
    if p.grad is None:
        p.grad = torch.zeros_like(p)
    return p.grad


class Sum(Regularizer):
    """Several terms at once (their sum; gradients added in order)."""

    def __init__(self, terms: Sequence[Regularizer]) -> None:
        self.terms = list(terms)

    def __call__(self, model: nn.Module) -> Tensor:
        return sum((t(model) for t in self.terms), torch.zeros(()))

    def add_grad(self, model: nn.Module) -> None:
        for t in self.terms:
            t.add_grad(model)

    def batch_term(self, model: nn.Module, xb: Tensor) -> Tensor | None:
        terms = [b for b in (t.batch_term(model, xb) for t in self.terms) if b is not None]
        return sum(terms[1:], terms[0]) if terms else None

    def close(self) -> None:
        for t in self.terms:
            t.close()


@dataclass(frozen=True)
class ClientTerm:
    """How a client builds one algorithm's term from a train message.

    ``build(model, config, arrays, device)``: ``model`` holds the global parameters,
    ``config`` the message's settings (the shared ones and each strategy's own keys),
    ``arrays`` its extra array records (per-client state the server keeps and sends, such as
    SCAFFOLD's correction); returns the term, or ``None`` when the message does not ask for it.
    """

    name: str
    build: Callable[[nn.Module, Mapping[str, Any], Arrays, torch.device], Regularizer | None]
