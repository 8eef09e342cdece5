"""What the round loop asks of every strategy beyond Flower's API, and Flower's own
FedAvg and FedProx with it.

Each strategy sends its own knobs in ``configure_train`` (Flower's FedProx its
``proximal-mu``; FedWSA its lambda, distance and target scope), so the loop sends only the
local-training settings all strategies share. For checkpoints each one says what later
rounds depend on (:meth:`RoundState.state`) and takes it back (:meth:`RoundState.restore`);
:meth:`RoundState.round_record` is what it adds to the round's scope record.
"""

from __future__ import annotations

from typing import Any

from flwr.serverapp import strategy as flwr_strategy


class RoundState:
    """Mixed into each strategy the loop drives; the defaults suit a stateless strategy."""

    def state(self) -> dict[str, Any]:
        """What a checkpoint must keep for the rounds after it (plain values)."""
        return {}

    def restore(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`state` as saved in a checkpoint."""

    def round_record(self, server_round: int) -> dict[str, Any]:
        """What this strategy adds to the round's record in ``scopes.json``."""
        return {"target": None}


class FedAvg(RoundState, flwr_strategy.FedAvg):
    """Flower's FedAvg (McMahan et al. 2017), unchanged."""


class FedProx(RoundState, flwr_strategy.FedProx):
    """Flower's FedProx (Li et al. 2020), unchanged: it sends its own ``proximal-mu``."""
