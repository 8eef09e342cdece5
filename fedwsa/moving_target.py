r"""FedWSA's moving target (``strategy.target_rule=moving``): a next target that follows the
federation's own growth instead of anchoring to the initial scope.

Why. With today's rule the next target is the fused scope of clients that were pulled toward
the previous one. At a strength where WSA acts, each client ends its round near the target, so
the target hardly moves from the initial model's scope: WSA becomes "keep each layer's spread
at its initialisation" (issue #34: sigma at 0.88-1.00x its initial value after 20 rounds where
FedAvg's grew 1.25-3.2x), not alignment between clients.

Derivation. Near the target, one layer's spread under local SGD is a scalar driven by the task
(a push ``g`` per step, taken as constant over a round) and pulled back by the WSA term with
the curvature ``h`` of :func:`fedwsa.wsa.layer_factors` (per weight, along the direction that
changes ``sigma``; the mean's direction has ``h/2`` for KL, ``h`` for W2). With heavy-ball
momentum ``beta`` the steady step is ``eta = lr / (1 - beta)``; from ``sigma*`` after ``K``
steps

.. math:: \sigma_K - \sigma^* = \frac{g}{h}\bigl(1 - (1 - \eta h)^K\bigr),

where without the term the spread would have moved by ``K eta g``. So the clients' residual
drift ``F - T`` (fused scope minus target) is the task's drift shrunk by

.. math:: \kappa = \frac{K \eta h}{1 - (1 - \eta h)^K} \ \ (\ge 1;\ \to 1 \text{ as } h \to 0;\
          K \eta h \text{ once } \eta h \ge 1),

and the moving rule undoes the shrinking: :math:`T_{t+1} = T_t + \kappa \odot (F_t - T_t)`, per
layer and per moment. At ``lambda = 0`` it is today's rule; at strength it lets the target
grow as the unregularised clients would, while the clients are still pulled toward one
common target each round. The assumptions (a constant push over the round, the linearised
term, one ``K`` for all clients: the example-weighted mean) are approximations; the rule is
an option to test, not a claim.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fedwsa.wsa import layer_curvature


def curvatures(
    target: np.ndarray, sizes: Sequence[int], distance: str, normalize: str, lam: float
) -> tuple[np.ndarray, np.ndarray]:
    """Per layer, the WSA term's curvature along the mean's and the spread's directions."""
    h_sigma = lam * layer_curvature(target, sizes, distance, normalize)
    return (h_sigma / 2 if distance == "kl" else h_sigma), h_sigma


def shrink_factor(h: np.ndarray, lr: float, momentum: float, steps: float) -> np.ndarray:
    """``kappa`` for curvatures ``h``, ``steps`` = K local steps of SGD (``lr``, ``momentum``)."""
    x = np.asarray(h, dtype=np.float64) * lr / (1 - momentum)  # eta h
    out = steps * x  # the equilibrium limit, where eta h >= 1
    small = x < 1
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = steps * x / (1 - (1 - x) ** steps)
    out[small] = ratio[small]
    out[x == 0] = 1.0  # no pull: nothing to undo
    return out


def moving_target(
    previous: np.ndarray, fused: np.ndarray, kappa_mu: np.ndarray, kappa_sigma: np.ndarray
) -> np.ndarray:
    """:math:`T_{t+1} = T_t + \\kappa \\odot (F_t - T_t)` for the ``(L, 2)`` scopes; a spread
    the step would take below half of the smaller of ``T_t``'s and ``F_t``'s stops there (a
    target spread must stay positive, and one round must not collapse it)."""
    t, f = np.asarray(previous, dtype=np.float64), np.asarray(fused, dtype=np.float64)
    kappa = np.stack([kappa_mu, kappa_sigma], axis=1)
    out = t + kappa * (f - t)
    out[:, 1] = np.maximum(out[:, 1], 0.5 * np.minimum(t[:, 1], f[:, 1]))
    return out
