"""Start Flower processes, submit a run, stream its progress, and stop everything after.

Simulation and deployment share this path: a SuperLink on a free port (``--simulation``
for the Simulation Engine), a per-run ``FLWR_HOME`` holding the connection, and
``flwr run <project> <connection> --run-config <toml>`` carrying the experiment JSON.
Every process started here, and each of its children (Ray included), is stopped when
the run ends, fails or is interrupted.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path

import psutil

from fedwsa.config import ExperimentConfig
from fedwsa.wire import RUN_CONFIG_KEY

PROJECT_DIR = Path(__file__).resolve().parents[1]
_SHOW = re.compile(r"\[fedwsa\]|ERROR|Error|Exception|Traceback")


class LaunchError(RuntimeError):
    """A Flower process could not be started or the run failed; one-line message."""


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def flower_env(flwr_home: Path) -> dict[str, str]:
    """Environment for Flower processes: private FLWR_HOME, no telemetry, no installs."""
    env = dict(os.environ)
    env.update(
        FLWR_HOME=str(flwr_home),
        FLWR_TELEMETRY_ENABLED="0",
        FLWR_DISABLE_UPDATE_CHECK="1",
        FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION="1",
        RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO="0",
        PYTHONUNBUFFERED="1",
    )
    return env


def stop_tree(proc: subprocess.Popen[bytes], grace_s: float = 5.0) -> None:
    """Terminate ``proc`` and all its descendants (SIGTERM, then SIGKILL after grace)."""
    try:
        root = psutil.Process(proc.pid)
        procs = [*root.children(recursive=True), root]
    except psutil.NoSuchProcess:
        procs = []
    for p in procs:
        with suppress(psutil.NoSuchProcess):
            p.terminate()
    _, alive = psutil.wait_procs(procs, timeout=grace_s)
    for p in alive:
        with suppress(psutil.NoSuchProcess):
            p.kill()
    psutil.wait_procs(alive, timeout=grace_s)
    if proc.poll() is None:
        proc.wait(timeout=grace_s)


@contextmanager
def process_group() -> Iterator[list[subprocess.Popen[bytes]]]:
    """A list to append started processes to; all are stopped on exit, whatever happens."""
    procs: list[subprocess.Popen[bytes]] = []
    try:
        yield procs
    finally:
        for p in reversed(procs):
            stop_tree(p)


def wait_http(url: str, proc: subprocess.Popen[bytes], name: str, log: Path, timeout_s: float = 60.0) -> None:
    """Wait until ``url`` answers, failing early if ``proc`` exits."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = " | ".join(log.read_text(errors="replace").strip().splitlines()[-3:])
            raise LaunchError(f"{name} exited with code {proc.returncode}: {tail}")
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise LaunchError(f"{url} did not answer within {timeout_s:.0f} s (see {log})")


def start_superlink(
    procs: list[subprocess.Popen[bytes]], env: dict[str, str], port: int, log: Path,
    *, simulation: bool, extra: Sequence[str] = ("--insecure",), host: str = "127.0.0.1",
) -> subprocess.Popen[bytes]:  # fmt: skip
    """Start ``flower-superlink`` and wait for its health endpoint."""
    cmd = ["flower-superlink", *extra, "--host", host, "--port", str(port),
           "--disable-runtime-dependency-installation"]  # fmt: skip
    if simulation:
        cmd.append("--simulation")
    with log.open("wb") as f:
        proc = subprocess.Popen(cmd, env=env, stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
    procs.append(proc)
    scheme = "http" if "--insecure" in extra else "https"
    if scheme == "http":
        wait_http(f"http://127.0.0.1:{port}/health", proc, "flower-superlink", log)
    return proc


def write_connection(flwr_home: Path, name: str, address: str, root_cert: Path | None = None) -> None:
    """Write the SuperLink connection ``name`` into ``$FLWR_HOME/config.toml``."""
    flwr_home.mkdir(parents=True, exist_ok=True)
    lines = [f"[superlink.{name}]", f'address = "{address}"']
    lines.append(f'root-certificates = "{root_cert}"' if root_cert else "insecure = true")
    (flwr_home / "config.toml").write_text("\n".join(lines) + "\n")


def write_run_config(cfg: ExperimentConfig, path: Path) -> Path:
    """The TOML file for ``flwr run --run-config``: the experiment JSON as one string."""
    path.write_text(f"{RUN_CONFIG_KEY} = {json.dumps(cfg.to_json())}\n")
    return path


def submit(
    procs: list[subprocess.Popen[bytes]], env: dict[str, str], connection: str,
    run_config: Path, log: Path, *, federation_config: str = "", verbose: bool = False,
) -> int:  # fmt: skip
    """``flwr run --stream``: every line goes to ``log``; progress lines also to stdout."""
    cmd = ["flwr", "run", str(PROJECT_DIR), connection, "--run-config", str(run_config), "--stream"]
    if federation_config:
        cmd += ["--federation-config", federation_config]
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
    )
    procs.append(proc)
    assert proc.stdout is not None
    with log.open("a", encoding="utf-8") as f:
        for raw in proc.stdout:
            line = re.sub(r"\x1b\[[0-9;]*m", "", raw.decode(errors="replace")).rstrip()
            f.write(line + "\n")
            f.flush()
            if verbose or _SHOW.search(line):
                print(line, flush=True)
    return proc.wait()


def check_finished(out_dir: Path, log: Path, code: int) -> None:
    """Raise :class:`LaunchError` unless the ServerApp wrote a finished ``metrics.json``."""
    try:
        status = json.loads((out_dir / "metrics.json").read_text())["status"]
    except (OSError, ValueError, KeyError):
        status = "missing"
    if code != 0 or status != "finished":
        raise LaunchError(f"the run did not finish (flwr run exit {code}, metrics {status}); see {log}")


def simulate(cfg: ExperimentConfig) -> None:
    """Run ``cfg`` on Flower's Simulation Engine; results land in ``cfg.out_dir``."""
    out = Path(cfg.out_dir)
    with tempfile.TemporaryDirectory(prefix="fedwsa-flwr-") as home, process_group() as procs:
        env = flower_env(Path(home))
        port = free_port()
        start_superlink(procs, env, port, out / "superlink.log", simulation=True)
        write_connection(Path(home), "fedwsa-sim", f"127.0.0.1:{port}")
        fed = f"num-supernodes={cfg.num_clients} client-resources-num-cpus={cfg.client_cpus}"
        log = out / "flower.log"
        code = submit(procs, env, "fedwsa-sim", write_run_config(cfg, out / "run_config.toml"), log,
                      federation_config=fed, verbose=cfg.verbose)  # fmt: skip
        check_finished(out, log, code)
