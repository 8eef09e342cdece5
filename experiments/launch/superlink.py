"""Flower's processes: the environment they run in, the SuperLink (TLS, authentication) and
SuperNodes, and the connection file that ``flwr`` commands use to reach a SuperLink."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from experiments.launch.processes import LaunchError, free_port, refused, wait_http


def flower_env(flwr_home: Path) -> dict[str, str]:
    """Environment for Flower processes: private FLWR_HOME, no telemetry, no installs,
    and this interpreter's ``bin`` first on PATH."""
    env = dict(os.environ)
    # Flower's commands (flwr, flower-superlink, and what they start) live beside this
    # Python: find them there even when the virtual environment is not activated.
    bindir = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join([bindir, env.get("PATH", "")])
    env.update(
        FLWR_HOME=str(flwr_home),
        FLWR_TELEMETRY_ENABLED="0",
        FLWR_DISABLE_UPDATE_CHECK="1",
        FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION="1",
        RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO="0",
        PYTHONUNBUFFERED="1",
    )
    return env


def tls_args(certs: Path | None) -> list[str]:
    """SuperLink flags: insecure, or server TLS from ``certs``."""
    if certs is None:
        return ["--insecure"]
    return ["--ssl-certfile", str(certs / "server.pem"), "--ssl-keyfile", str(certs / "server.key"),
            "--ssl-ca-certfile", str(certs / "ca.crt")]  # fmt: skip


def start_superlink(
    procs: list[subprocess.Popen[bytes]], env: dict[str, str], port: int, log: Path,
    *, simulation: bool, certs: Path | None = None, host: str = "127.0.0.1", auth: bool = False,
) -> subprocess.Popen[bytes]:  # fmt: skip
    """Start ``flower-superlink`` and wait for its health endpoint; ``auth``: only SuperNodes
    with a registered key may join (needs ``certs``)."""
    cmd = ["flower-superlink", *tls_args(certs), "--host", host, "--port", str(port),
           "--disable-runtime-dependency-installation"]  # fmt: skip
    if simulation:
        cmd.append("--simulation")
    if auth:
        cmd.append("--enable-supernode-auth")
    with log.open("wb") as f:
        proc = subprocess.Popen(cmd, env=env, stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
    procs.append(proc)
    scheme = "https" if certs else "http"
    wait_http(f"{scheme}://127.0.0.1:{port}/health", proc, "flower-superlink", log,
              ca=certs / "ca.crt" if certs else None)  # fmt: skip
    return proc


def start_supernode(
    procs: list[subprocess.Popen[bytes]], env: dict[str, str], superlink: str, partition_id: int,
    num_partitions: int, log: Path, *, certs: Path | None = None, key: Path | None = None,
) -> subprocess.Popen[bytes]:  # fmt: skip
    """Start one ``flower-supernode`` holding ``partition_id``, on a free port; ``key``: its
    private key, for a SuperLink that authenticates SuperNodes."""
    cmd = ["flower-supernode", "--superlink", superlink, "--host", "127.0.0.1", "--port", str(free_port()),
           "--node-config", f"partition-id={partition_id} num-partitions={num_partitions}"]  # fmt: skip
    if certs is None:
        cmd.append("--insecure")
    else:
        cmd += ["--root-certificates", str(certs / "ca.crt")]
        own = certs / f"supernode-{partition_id}.pem"
        if own.exists():  # encrypt the SuperNode's own Runtime API too
            cmd += ["--ssl-certfile", str(own), "--ssl-keyfile", str(own.with_suffix(".key")),
                    "--ssl-ca-certfile", str(certs / "ca.crt")]  # fmt: skip
    if key is not None:
        cmd += ["--auth-supernode-private-key", str(key)]
    with log.open("wb") as f:
        proc = subprocess.Popen(cmd, env=env, stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
    procs.append(proc)
    return proc


def probe(address: str, timeout_s: float = 5.0) -> None:
    """Raise :class:`LaunchError` unless ``host:port`` accepts a TCP connection."""
    try:
        why = refused(address, timeout_s)
    except ValueError:
        raise LaunchError(f"federation.superlink: expected host:port, got {address!r}") from None
    if why:
        raise LaunchError(f"SuperLink {address} does not answer ({why})")


def write_connection(flwr_home: Path, name: str, address: str, root_cert: Path | None = None) -> None:
    """Write the SuperLink connection ``name`` into ``$FLWR_HOME/config.toml``."""
    flwr_home.mkdir(parents=True, exist_ok=True)
    lines = [f"[superlink.{name}]", f'address = "{address}"']
    lines.append(f'root-certificates = "{root_cert}"' if root_cert else "insecure = true")
    (flwr_home / "config.toml").write_text("\n".join(lines) + "\n")
