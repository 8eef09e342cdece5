"""SuperNode authentication: only invited SuperNodes join a federation (experiments.nodekey,
``federation.auth``), and a node whose key is removed mid-run is a dead node, not a hang."""

import json
import os
import stat
import subprocess
import sys

import pytest

from experiments.launch.nodekeys import make_key
from experiments.launch.processes import free_port
from experiments.launch.superlink import flower_env
from tests.faults import DELAY_ENV, DELAY_ROUNDS_ENV
from tests.helpers import FAULTY, ROOT, flower_pids, metrics, placeless, round_ended, run_entry


def _nodekey(*args):
    return subprocess.run([sys.executable, "-m", "experiments.nodekey", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)  # fmt: skip


def test_keys_are_owner_only_and_never_overwritten(tmp_path):
    pub = make_key(tmp_path / "keys", "site-a")
    private = pub.with_suffix("")
    assert (
        stat.S_IMODE(private.stat().st_mode) == 0o600
        and stat.S_IMODE((tmp_path / "keys").stat().st_mode) == 0o700
    )
    assert pub.read_text().startswith("ecdsa-sha2-nistp384 ")
    proc = _nodekey("make", str(tmp_path / "keys"), "--name", "site-a")
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1 and "exists" in proc.stderr
    assert private.read_text() not in proc.stdout + proc.stderr


def test_register_errors_are_one_line(tmp_path):
    proc = _nodekey("register", str(tmp_path / "nope.pub"), "--superlink", "127.0.0.1:1")
    assert proc.returncode == 1 and proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1
    (tmp_path / "bad.pub").write_text("ssh-rsa AAAA")
    proc = _nodekey("register", str(tmp_path / "bad.pub"), "--superlink", "127.0.0.1:1")
    assert proc.returncode == 1 and "not an OpenSSH EC public key" in proc.stderr


def _intruder(address, ca, pid, log, key=None):
    cmd = ["flower-supernode", "--superlink", address, "--root-certificates", str(ca),
           "--port", str(free_port()), "--node-config", f"partition-id={pid} num-partitions=2"]  # fmt: skip
    if key is not None:
        cmd += ["--auth-supernode-private-key", str(key)]
    env = flower_env(log.with_suffix(".home"))  # as the launcher's own SuperNodes get it (PATH included)
    with log.open("wb") as f:
        return subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env)


@pytest.mark.slow
@pytest.mark.deployment
def test_uninvited_nodes_are_kept_out_and_a_removed_key_is_a_dead_node(tmp_path):
    """Two registered SuperNodes (TLS + auth, the default with TLS), two intruders claiming
    their partitions (an unregistered key, no key). After round 2 node 1's key is removed
    while it trains round 2 (held 6 s by the test ClientApp)."""
    before = flower_pids()
    out = tmp_path / "auth"
    cmd = [sys.executable, "-m", "experiments.federate", f"hydra.run.dir={out}", "num_clients=2",
           "num_rounds=2", "federation.tls=true", "round_timeout_s=90", "node_wait_s=30"]  # fmt: skip
    env = {**os.environ, **FAULTY, DELAY_ENV: "6", DELAY_ROUNDS_ENV: "2"}
    proc = subprocess.Popen(
        cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )
    intruders, lines, removed = [], [], None
    try:
        for line in proc.stdout:
            lines.append(line)
            if round_ended(line, 0):
                fed = json.loads((out / "federation.json").read_text())
                ca, key = out / "certs" / "ca.crt", make_key(tmp_path / "intruder", "x").with_suffix("")
                intruders = [_intruder(fed["superlink"], ca, 0, tmp_path / "unregistered.log", key),
                             _intruder(fed["superlink"], ca, 1, tmp_path / "keyless.log")]  # fmt: skip
            if round_ended(line, 1) and removed is None:  # round 2's clients now sleep 6 s
                removed = _nodekey("remove", str(fed["node_ids"][1]), "--superlink", fed["superlink"],
                                   "--certs", str(out / "certs"))  # fmt: skip
        assert proc.wait(timeout=120) == 0, "".join(lines[-30:])
        codes = [p.wait(timeout=60) for p in intruders]
    finally:
        for p in [proc, *intruders]:
            if p.poll() is None:
                p.terminate()
                p.wait(timeout=60)
    assert removed.returncode == 0, removed.stderr
    assert all(c != 0 for c in codes)  # refused, and their logs say so (Flower's exit code 305)
    unregistered, keyless = ((tmp_path / f).read_text() for f in ("unregistered.log", "keyless.log"))
    assert "Exit Code: 305" in unregistered and "Failed to activate SuperNode" in unregistered
    assert "Exit Code: 305" in keyless and "SuperNode authentication is enabled" in keyless
    rows, status = metrics(out)
    fed = json.loads((out / "federation.json").read_text())
    assert status == "finished" and fed["auth"] and fed["tls"]
    registered = [str(n) for n in fed["node_ids"]]
    assert rows[1]["clients"] == [0, 1] and rows[1]["client_nodes"] == registered
    assert rows[2]["clients"] == [0] and rows[2]["failed_clients"] == [1]  # removed: a dead node
    assert any("client 1 failed: Error: Node Unavailable" in ln for ln in lines)  # within the round
    alone, _ = run_entry(tmp_path, "alone", "num_clients=2", "num_rounds=2", "engine=inprocess")
    assert placeless(rows[:2]) == placeless(metrics(alone)[0][:2])  # intruders changed nothing
    keys = out / "keys"
    assert stat.S_IMODE(keys.stat().st_mode) == 0o700
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in keys.iterdir() if p.suffix != ".pub")
    assert not any(p.read_text() in "".join(lines) for p in keys.iterdir() if p.suffix != ".pub")
    assert {"ca.crt", "server.pem", "server.key", "supernode-0.pem"} <= {
        p.name for p in (out / "certs").iterdir()
    }
    assert "https://" in (out / "logs" / "supernode-0.log").read_text()  # its own API is TLS too
    assert flower_pids() <= before
