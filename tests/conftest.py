"""Shared test setup."""

import pytest

from tests.helpers import flower_pids, run_entry


@pytest.fixture(autouse=True, scope="session")
def _flower_task_identity():
    """Flower 1.42 needs a task identity to build Messages outside a running app."""
    from flwr.supercore.task_identity import TaskIdentity

    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 1, 0


@pytest.fixture(scope="session")
def fedwsa_run(tmp_path_factory):
    """One small FedWSA simulation, shared by the tests that compare against it."""
    before = flower_pids()
    out, stdout = run_entry(
        tmp_path_factory.mktemp("sim"), "fedwsa", "strategy=fedwsa", "fraction_train=0.67"
    )
    assert flower_pids() <= before  # nothing left running
    return out, stdout
