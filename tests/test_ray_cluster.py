"""A simulation on a two-node Ray cluster (both nodes on this machine, 1 CPU each): clients
train on both nodes, and the results equal a single-machine run bit for bit. Every Ray
process the test started is stopped by PID (``ray stop`` would stop other people's too)."""

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from experiments.launch.processes import free_port, marked_processes, wait_dead
from tests.faults import DELAY_ENV, LOG_ENV
from tests.helpers import FAULTY, metrics, placeless, run_entry

pytestmark = pytest.mark.slow
RAY = str(Path(sys.executable).parent / "ray")


@pytest.fixture(scope="module")
def ray_cluster():
    """Two nodes of 1 CPU each; the head declares 1 GPU that is not there (Ray schedules by
    what is declared), the worker none. Its actors log their train calls (the test ClientApp)."""
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's socket paths are bounded
    port = free_port()
    address = f"127.0.0.1:{port}"
    marks = (temp, address)
    common = ["--num-cpus", "1", "--disable-usage-stats"]
    env = {**os.environ, LOG_ENV: str(Path(temp) / "clients.log"), DELAY_ENV: "1"}  # inherited by the actors
    try:
        head = [RAY, "start", "--head", "--port", str(port), "--temp-dir", temp, "--include-dashboard=false"]
        subprocess.run(
            [*head, *common, "--num-gpus", "1"], check=True, capture_output=True, timeout=120, env=env
        )
        subprocess.run([RAY, "start", "--address", address, *common, "--num-gpus", "0"], check=True,
                       capture_output=True, timeout=120, env=env)  # fmt: skip
        yield address, Path(env[LOG_ENV])
    finally:
        procs = marked_processes(marks)
        assert procs  # the cluster's own processes were found (so this cleanup can fail)
        for p in procs:
            p.kill()
        assert not wait_dead(procs, 15)
        shutil.rmtree(temp, ignore_errors=True)


def test_clients_train_on_both_nodes_with_the_single_machine_results(tmp_path, ray_cluster, fedwsa_run):
    """The session's FedWSA run (3 clients, 2 of them per round, 2 rounds), on the cluster."""
    out, _ = run_entry(
        tmp_path, "cluster", "strategy=fedwsa", "fraction_train=0.67", f"ray_address={ray_cluster[0]}"
    )
    alone = fedwsa_run[0]  # the same run on this machine's own Ray
    rows = metrics(out)[0]
    nodes = {n for r in rows[1:] for n in r["client_nodes"]}
    assert len(nodes) == 2, nodes  # the head and the worker both trained clients
    assert placeless(rows) == placeless(metrics(alone)[0])
    assert {n for r in metrics(alone)[0][1:] for n in r["client_nodes"]}.isdisjoint(nodes)  # other Ray


def test_gpu_shares_bound_how_many_clients_train_at_once(tmp_path, ray_cluster):
    """Ray schedules by declared resources: with one GPU declared on the head and
    ``client_gpus=1``, one client trains at a time and only on the head, although each node
    has a CPU (without GPU shares both nodes train at once: the test above)."""
    address, log = ray_cluster
    log.unlink(missing_ok=True)
    out, _ = run_entry(
        tmp_path, "gpu", "strategy=fedavg", "client_gpus=1", f"ray_address={address}", env=FAULTY
    )
    rows = metrics(out)[0]
    assert [len(r["clients"]) for r in rows[1:]] == [3, 3]
    assert len({n for r in rows[1:] for n in r["client_nodes"]}) == 1  # the node with the GPU
    lines = [ln.split() for ln in log.read_text().splitlines()]
    events = sorted((float(t), 1 if what == "start" else -1) for what, t, _ in lines)  # an end before a start
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    assert len(events) == 12 and peak == 1  # 6 train calls (1 s each), never two at once
