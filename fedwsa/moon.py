r"""MOON: Li, He, Song 2021, "Model-Contrastive Federated Learning",
https://arxiv.org/abs/2103.16257 (CVPR 2021), with NIID-Bench's code as the reference. Pure
math: the client's model-contrastive term. The strategy is ``strategies/algorithms/moon.py``.

At every local step, with ``z`` the representation of the batch under the model being trained,
``z_glob`` under the global model it started from and ``z_prev`` under the client's own model
of its previous round (both frozen), the loss gains

.. math:: \mu\,\ell_{con} = -\mu \log\frac{e^{\cos(z, z_{glob})/\tau}}
          {e^{\cos(z, z_{glob})/\tau} + e^{\cos(z, z_{prev})/\tau}}

averaged over the batch. The representation is the input of the model's last linear layer
(its penultimate features), for every model: NIID-Bench adds a projection head for MOON,
which would make MOON's model differ from every other algorithm's. A client with no previous
model (its first round) has no term: NIID-Bench's ``z_prev`` is then the global model's,
whose term has zero gradient. The clients stay stateless: the server keeps each client's
last model (the one it sent) and sends it with the train message under :data:`MOON_PREVIOUS`.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fedwsa.terms import Arrays, ClientTerm, Regularizer

MOON_MU = "moon-mu"  # train settings: mu
MOON_TEMPERATURE = "moon-temperature"  # train settings: tau
MOON_PREVIOUS = "moon-previous"  # train message: the client's previous local model (an ArrayRecord)


def contrastive_loss(z: Tensor, z_glob: Tensor, z_prev: Tensor, temperature: float) -> Tensor:
    """:math:`\\ell_{con}`, the batch mean (cross-entropy with the global model as the positive)."""
    pos = F.cosine_similarity(z, z_glob, dim=-1)
    neg = F.cosine_similarity(z, z_prev, dim=-1)
    logits = torch.stack([pos, neg], dim=1) / temperature
    return F.cross_entropy(logits, torch.zeros(z.shape[0], dtype=torch.long, device=z.device))


def last_linear(model: nn.Module) -> nn.Linear:
    """The model's last ``nn.Linear`` (its classifier), whose input is the representation."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError("MOON needs a model whose last layer is nn.Linear")
    return linears[-1]


class Representation:
    """Captures the input of ``model``'s last linear layer at every forward pass."""

    def __init__(self, model: nn.Module) -> None:
        self.z: Tensor | None = None
        self.handle = last_linear(model).register_forward_hook(self._keep)

    def _keep(self, module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
        self.z = inputs[0]

    def remove(self) -> None:
        self.handle.remove()


class Contrastive(Regularizer):
    """MOON's term: a batch term (``batch_term``), nothing on the weights alone."""

    def __init__(
        self, model: nn.Module, previous: Mapping[str, Tensor], mu: float, temperature: float
    ) -> None:
        self.mu, self.temperature = mu, temperature
        self.glob = copy.deepcopy(model).eval().requires_grad_(False)  # the global model, as received
        self.prev = copy.deepcopy(model).eval().requires_grad_(False)
        self.prev.load_state_dict(dict(previous))
        self.z_of = {id(m): Representation(m) for m in (model, self.glob, self.prev)}

    def __call__(self, model: nn.Module) -> Tensor:
        return torch.zeros(())

    def add_grad(self, model: nn.Module) -> None:
        pass

    def batch_term(self, model: nn.Module, xb: Tensor) -> Tensor:
        """``mu * l_con`` of the batch ``xb``, after ``model(xb)`` (whose representation the
        hook kept)."""
        z = self.z_of[id(model)].z
        assert z is not None, "call the model on the batch first"
        with torch.no_grad():
            self.glob(xb)
            self.prev(xb)
        z_glob, z_prev = self.z_of[id(self.glob)].z, self.z_of[id(self.prev)].z
        assert z_glob is not None and z_prev is not None
        return self.mu * contrastive_loss(z.float(), z_glob.float(), z_prev.float(), self.temperature)

    def close(self) -> None:
        for r in self.z_of.values():
            r.remove()


def _build(
    model: nn.Module, config: Mapping[str, Any], arrays: Arrays, device: torch.device
) -> Contrastive | None:
    mu = float(config.get(MOON_MU, 0.0))
    previous = arrays.get(MOON_PREVIOUS)
    if mu <= 0 or not previous:
        return None
    return Contrastive(model, {k: v.to(device) for k, v in previous.items()}, mu,
                       float(config.get(MOON_TEMPERATURE, 0.5)))  # fmt: skip


TERM = ClientTerm("moon", _build)
