"""The one local training loop (every algorithm is a regularizer) and evaluation."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fedwsa.device import autocast
from fedwsa.terms import Regularizer


def derive_seed(*parts: int) -> int:
    """A 63-bit seed from several integers (e.g. base seed, round, partition id)."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(2, np.uint64)[0] >> 1)


@dataclass(frozen=True)
class TrainResult:
    """Mean task (cross-entropy) loss over all samples seen, and counts."""

    loss: float
    num_examples: int
    steps: int


def batches(
    x: Tensor, y: Tensor, batch_size: int, generator: torch.Generator | None = None
) -> Iterator[tuple[Tensor, Tensor]]:
    """Mini-batches of in-memory tensors; shuffled by ``generator`` when one is given.

    Indexing tensors directly is much cheaper than a ``DataLoader`` over single samples
    for datasets that fit in memory, which is every dataset this project ships. On a GPU,
    ``x`` and ``y`` live there and so does the batch order (drawn on the CPU's generator,
    so it is the same on every device).
    """
    n = x.shape[0]
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    for idx in order.to(x.device).split(batch_size):  # one copy per pass, none per batch
        yield x[idx], y[idx]


def local_step_count(num_examples: int, batch_size: int, epochs: int, steps: int = 0) -> int:
    """SGD steps of one local round (:func:`local_batches`): ``steps`` when > 0,
    else ``epochs * ceil(n / batch_size)``; 0 without data."""
    if num_examples <= 0:
        return 0
    return steps if steps > 0 else epochs * math.ceil(num_examples / batch_size)


def local_batches(
    x: Tensor, y: Tensor, batch_size: int, generator: torch.Generator | None = None, *,
    epochs: int, steps: int = 0,
) -> Iterator[tuple[Tensor, Tensor]]:  # fmt: skip
    """The mini-batches of one round of local training: ``epochs`` reshuffled passes, or,
    with ``steps > 0``, exactly ``steps`` batches of consecutive reshuffled passes (so
    ``steps = k * ceil(n / batch_size)`` is the same as ``epochs = k``; none without data)."""
    passes: Iterable[int] = range(epochs)
    if steps > 0:  # as many passes as needed, cut at ``steps``
        passes = itertools.count() if x.shape[0] > 0 else ()
    stream = (b for _ in passes for b in batches(x, y, batch_size, generator))
    return itertools.islice(stream, steps or None)


def sgd_step(
    model: nn.Module,
    opt: torch.optim.Optimizer,
    xb: Tensor,
    yb: Tensor,
    regularizer: Regularizer | None = None,
    fused: bool = True,
    precision: str = "fp32",
) -> Tensor:
    """One optimiser step on ``cross_entropy + regularizer(model)`` (and the regularizer's
    batch term, :meth:`fedwsa.terms.Regularizer.batch_term`); returns the task loss.

    ``fused`` adds the regularizer's gradient in closed form after the task loss's
    backward (as cheap as weight decay); ``fused=False`` differentiates
    ``regularizer(model)`` with autograd (the reference; equal up to float rounding).
    ``precision="bf16"``: the forward pass under bf16 autocast; the backward pass, the
    regularizer and the parameters stay fp32.
    """
    opt.zero_grad(set_to_none=True)
    extra = None
    with autocast(xb.device, precision):
        task = F.cross_entropy(model(xb), yb)
        if regularizer is not None:
            extra = regularizer.batch_term(model, xb)  # MOON's; None for weight-only terms
    loss = task if extra is None else task + extra
    if regularizer is None or fused:
        loss.backward()
        if regularizer is not None:
            regularizer.add_grad(model)
    else:
        (loss + regularizer(model)).backward()
    opt.step()
    return task


def train(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    epochs: int,
    steps: int = 0,
    lr: float,
    batch_size: int,
    momentum: float = 0.0,
    weight_decay: float = 0.0,
    regularizer: Regularizer | None = None,
    generator: torch.Generator | None = None,
    fused: bool = True,
    precision: str = "fp32",
    stop: Callable[[int], bool] | None = None,
) -> TrainResult:
    """Train ``model`` in place with SGD on ``cross_entropy + regularizer(model)``.

    ``steps > 0``: exactly that many SGD steps instead of ``epochs`` passes (see
    :func:`local_batches`). ``regularizer=None`` is plain training (FedAvg's local step);
    ``fused``: see :func:`sgd_step`. ``stop(epoch)``: asked after each whole epoch (1, 2, ...;
    with ``steps == 0``), ends training early when it says so (``TrainResult.steps`` counts
    the steps taken); the optimiser's state carries across epochs as without it.
    """
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    model.train()
    total = torch.zeros((), dtype=torch.float64, device=x.device)  # no GPU sync per step
    seen, taken = 0, 0
    per_epoch = math.ceil(x.shape[0] / batch_size) if x.shape[0] else 1
    for xb, yb in local_batches(x, y, batch_size, generator, epochs=epochs, steps=steps):
        task = sgd_step(model, opt, xb, yb, regularizer, fused, precision)
        total += task.detach().double() * yb.shape[0]
        seen += yb.shape[0]
        taken += 1
        if stop is not None and steps == 0 and taken % per_epoch == 0 and stop(taken // per_epoch):
            break
    return TrainResult(loss=float(total) / max(seen, 1), num_examples=int(x.shape[0]), steps=taken)


@torch.no_grad()
def evaluate(model: nn.Module, x: Tensor, y: Tensor, batch_size: int = 1000) -> tuple[float, float]:
    """Mean cross-entropy loss and accuracy of ``model`` on ``(x, y)``."""
    model.eval()
    loss = torch.zeros((), dtype=torch.float64, device=x.device)  # no GPU sync per batch
    correct = torch.zeros((), dtype=torch.int64, device=x.device)
    for xb, yb in batches(x, y, batch_size):
        out = model(xb)
        loss += F.cross_entropy(out, yb, reduction="sum").double()
        correct += (out.argmax(dim=1) == yb).sum()
    n = max(int(y.shape[0]), 1)
    return float(loss) / n, int(correct) / n
