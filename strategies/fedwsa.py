"""FedWSA: FedAvg that broadcasts a target scope and fuses the clients' scopes.

Weight Scope Alignment, https://arxiv.org/abs/2408.12237, as defined in the project's
``WSA.md``: clients train toward the target scope ``T_t``; the server averages the
parameters like FedAvg and fuses the returned scopes into ``T_{t+1}``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg

from fedwsa.run.wire import METRICS, TARGET_MU, TARGET_SIGMA, decode_reply, encode_scope
from fedwsa.wsa import align_to_scope, next_target, scope_of_arrays


class FedWSA(FedAvg):
    """FedAvg plus a target scope: sent in ``configure_train``, updated in ``aggregate_train``.

    Parameters
    ----------
    initial_target : (L, 2) array, the scope of the initial model (``T_1``).
    names : the scoped parameter names, in the order of the scope rows.
    fusion : ``mean``, ``mixture`` or ``global`` (see ``fedwsa.wsa.next_target``).
    align_global : rescale the averaged model's scoped tensors to the fused scope.
    **kwargs : passed to Flower's ``FedAvg``.
    """

    def __init__(
        self,
        *,
        initial_target: np.ndarray,
        names: Sequence[str],
        fusion: str = "mean",
        align_global: bool = False,
        **kwargs: object,
    ) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.target = np.asarray(initial_target, dtype=np.float64)
        self.names = list(names)
        self.fusion = fusion
        self.align_global = align_global
        self.sent: dict[int, np.ndarray] = {}  # round -> target broadcast in that round

    def state(self) -> dict[str, list[list[float]]]:
        """What a checkpoint keeps: the target scope for the next round."""
        return {"target": self.target.tolist()}

    def restore(self, state: dict[str, list[list[float]]]) -> None:
        self.target = np.asarray(state["target"], dtype=np.float64)

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Add the current target scope to the round's config, then sample as FedAvg."""
        config.update(encode_scope(self.target, TARGET_MU, TARGET_SIGMA))
        self.sent[server_round] = self.target.copy()
        return super().configure_train(server_round, arrays, config, grid)

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Average as FedAvg, fuse the client scopes into the next target, optionally align."""
        replies = list(replies)
        arrays, metrics = super().aggregate_train(server_round, replies)
        if arrays is None:
            return arrays, metrics
        reports = [decode_reply(m.content[METRICS]) for m in replies if not m.has_error()]
        params = {k: v.numpy() for k, v in arrays.items()}
        self.target = next_target(
            self.fusion,
            [r.scope for r in reports],
            [r.num_examples for r in reports],
            scope_of_arrays(params, self.names),
        )
        if self.align_global:
            aligned = align_to_scope(params, self.names, self.target)
            arrays = ArrayRecord({k: Array(np.ascontiguousarray(v)) for k, v in aligned.items()})
        return arrays, metrics
