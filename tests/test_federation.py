"""Real multi-process federations on loopback: SuperLink + SuperNodes as OS processes."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from experiments.launch.processes import free_port
from experiments.launch.superlink import flower_env
from tests.helpers import ROOT, flower_pids, metrics, round_ended, run_entry, same_metrics

pytestmark = [pytest.mark.slow, pytest.mark.deployment]


def test_insecure_federation_matches_simulation(tmp_path, fedwsa_run):
    before = flower_pids()
    out, stdout = run_entry(
        tmp_path, "fed", "strategy=fedwsa", "fraction_train=0.67", entry="experiments.federate"
    )
    assert flower_pids() <= before  # SuperLink and SuperNodes stopped
    assert "round   2/2" in stdout
    rows, status = metrics(out)
    assert status == "finished" and len(rows) == 3
    assert same_metrics(out, fedwsa_run[0])  # bit-identical to the simulation
    fed = json.loads((out / "federation.json").read_text())
    assert len(fed["supernodes"]) == 3 and not fed["tls"]
    assert sorted(p.name for p in (out / "logs").iterdir()) == [
        "flower.log", "superlink.log", "supernode-0.log", "supernode-1.log", "supernode-2.log",
    ]  # fmt: skip


def test_killed_supernode_does_not_hang_and_rejoins(tmp_path):
    """Kill SuperNode 2 after round 1, start it again after round 2: it rejoins."""
    out = tmp_path / "kill"
    cmd = [sys.executable, "-m", "experiments.federate", f"hydra.run.dir={out}", "num_clients=3",
           "num_rounds=5", "round_timeout_s=30", "node_wait_s=60"]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    env = flower_env(tmp_path / "home")  # as the launcher's own SuperNodes get it (PATH included)
    lines, comeback = [], None
    try:
        for line in proc.stdout:
            lines.append(line)
            if round_ended(line, 1):
                fed = json.loads((out / "federation.json").read_text())
                os.kill(fed["supernodes"]["2"], signal.SIGKILL)
            if round_ended(line, 2) and comeback is None:
                node = [
                    *("flower-supernode", "--insecure", "--superlink", fed["superlink"]),
                    *("--port", str(free_port()), "--node-config", "partition-id=2 num-partitions=3"),
                ]
                comeback = subprocess.Popen(
                    node, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
                )
        assert proc.wait(timeout=60) == 0, "".join(lines[-30:])
    finally:
        if comeback is not None:
            comeback.kill()
            comeback.wait()
        if proc.poll() is None:  # SIGTERM: the launcher then stops everything it started
            proc.terminate()
            proc.wait(timeout=60)
    rows, status = metrics(out)
    assert status == "finished"
    assert rows[2]["clients"] == [0, 1] and rows[2]["failed_clients"] == [2]  # lost in round 2
    # back within the run (how soon depends on when the SuperLink drops the dead node id)
    assert any(2 in r["clients"] for r in rows[3:])
    assert any("gave no usable reply" in ln for ln in lines)


def _federate(tmp_path, *overrides):
    cmd = [sys.executable, "-m", "experiments.federate", f"hydra.run.dir={tmp_path}", *overrides]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_unreachable_superlink_is_one_line_error(tmp_path):
    t0 = time.monotonic()
    proc = _federate(tmp_path, "federation.superlink=127.0.0.1:9", "federation.insecure=true")
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]
    assert "does not answer" in proc.stderr and time.monotonic() - t0 < 60


def test_missing_certificate_is_one_line_error(tmp_path):
    proc = _federate(tmp_path, f"federation.certs={tmp_path}/no")
    assert proc.returncode == 1 and "ca.crt" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_port_in_use_is_one_line_error(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        proc = _federate(tmp_path, f"federation.port={s.getsockname()[1]}")
    assert proc.returncode == 1 and "address already in use" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("name", ["moon"])  # feddyn passes too (50 s more): -k per_client with it added
def test_per_client_state_travels_in_a_federation_as_in_process(tmp_path, name):
    """MOON's previous models (like FedDyn's g_k and SCAFFOLD's c_i) live on the server and
    travel with the train messages to SuperNode processes: the federation gives the
    in-process run's results."""
    before = flower_pids()
    common = (f"strategy={name}", "fraction_train=0.67", "num_rounds=3")  # clients come back with state
    fed, _ = run_entry(tmp_path, "fed", *common, entry="experiments.federate")
    assert flower_pids() <= before
    local, _ = run_entry(tmp_path, "local", *common, "engine=inprocess")
    assert metrics(fed)[1] == "finished" and same_metrics(fed, local)
