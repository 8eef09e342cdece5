"""Shared test setup."""

import pytest


@pytest.fixture(autouse=True, scope="session")
def _flower_task_identity():
    """Flower 1.42 needs a task identity to build Messages outside a running app."""
    from flwr.supercore.task_identity import TaskIdentity

    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 1, 0
