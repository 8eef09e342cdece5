"""A simulation on a two-node Ray cluster (both nodes on this machine, 1 CPU each): clients
train on both nodes, and the results equal a single-machine run bit for bit. Every Ray
process the test started is stopped by PID (``ray stop`` would stop other people's too)."""

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import psutil
import pytest

from experiments.launch.processes import free_port, wait_dead
from tests.helpers import metrics, placeless, run_entry

pytestmark = pytest.mark.slow
RAY = str(Path(sys.executable).parent / "ray")


def _ray_processes(marks):
    """Processes whose command line names this cluster's temp dir or GCS address."""
    found = []
    for p in psutil.process_iter(["cmdline"]):
        text = " ".join(p.info["cmdline"] or [])
        if any(m in text for m in marks) and p.pid != psutil.Process().pid:
            found.append(p)
    return found


@pytest.fixture
def ray_cluster():
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's socket paths are bounded
    port = free_port()
    address = f"127.0.0.1:{port}"
    marks = (temp, address)
    env_args = ["--num-cpus", "1", "--num-gpus", "0", "--disable-usage-stats"]
    try:
        head = [RAY, "start", "--head", "--port", str(port), "--temp-dir", temp, "--include-dashboard=false"]
        subprocess.run([*head, *env_args], check=True, capture_output=True, timeout=120)
        subprocess.run(
            [RAY, "start", "--address", address, *env_args], check=True, capture_output=True, timeout=120
        )
        yield address
    finally:
        procs = _ray_processes(marks)
        assert procs  # the cluster's own processes were found (so this cleanup can fail)
        for p in procs:
            p.kill()
        assert not wait_dead(procs, 15)
        shutil.rmtree(temp, ignore_errors=True)


def test_clients_train_on_both_nodes_with_the_single_machine_results(tmp_path, ray_cluster, fedwsa_run):
    """The session's FedWSA run (3 clients, 2 of them per round, 2 rounds), on the cluster."""
    out, _ = run_entry(
        tmp_path, "cluster", "strategy=fedwsa", "fraction_train=0.67", f"ray_address={ray_cluster}"
    )
    alone = fedwsa_run[0]  # the same run on this machine's own Ray
    rows = metrics(out)[0]
    nodes = {n for r in rows[1:] for n in r["client_nodes"]}
    assert len(nodes) == 2, nodes  # the head and the worker both trained clients
    assert placeless(rows) == placeless(metrics(alone)[0])
    assert {n for r in metrics(alone)[0][1:] for n in r["client_nodes"]}.isdisjoint(nodes)  # other Ray
