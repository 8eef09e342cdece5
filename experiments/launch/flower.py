"""Start Flower processes, submit a run, stream its progress, and stop everything after.

Simulation and deployment share this path: a SuperLink on a free port (``--simulation``
for the Simulation Engine), a per-run ``FLWR_HOME`` holding the connection, and
``flwr run <project> <connection> --run-config <toml>`` carrying the experiment JSON.
Every process started here, and each of its children (Ray included), is stopped when
the run ends, fails or is interrupted.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import tomli  # Flower's own dependency; tomllib needs Python 3.11

from experiments.launch.processes import (
    LaunchError,
    ProgressView,
    check_interrupted,
    free_port,
    last_error,
    last_error_line,
    marked_processes,
    process_group,
    stop_tree,
    strip_ansi,
    wait_dead,
    wait_http,
)
from fedwsa.device import resolve_device
from fedwsa.run import jobs
from fedwsa.run.config import ExperimentConfig
from fedwsa.run.wire import ENGINE_KEY, FINISHED, RUN_CONFIG_KEY, SWEEP_KEY

PROJECT_DIR = Path(__file__).resolve().parents[2]
_SHOW = re.compile(r"\[fedwsa\]|ERROR|Error|Exception|Traceback")


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
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise LaunchError(f"federation.superlink: expected host:port, got {address!r}")
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as e:
        raise LaunchError(f"SuperLink {address} does not answer ({e.strerror or e})") from None


def write_connection(flwr_home: Path, name: str, address: str, root_cert: Path | None = None) -> None:
    """Write the SuperLink connection ``name`` into ``$FLWR_HOME/config.toml``."""
    flwr_home.mkdir(parents=True, exist_ok=True)
    lines = [f"[superlink.{name}]", f'address = "{address}"']
    lines.append(f'root-certificates = "{root_cert}"' if root_cert else "insecure = true")
    (flwr_home / "config.toml").write_text("\n".join(lines) + "\n")


def write_run_config(
    cfg: ExperimentConfig, path: Path, engine: str = "deployment", sweep: Path | None = None
) -> Path:
    """The TOML file for ``flwr run --run-config``: the experiment JSON as one string, and
    which engine runs it (the simulation assigns partitions to its virtual nodes); for a
    sweep's Flower run, its job folder instead of one experiment (``fedwsa.run.jobs``)."""
    text = cfg.to_json() if sweep is None else ""
    path.write_text(f"{RUN_CONFIG_KEY} = {json.dumps(text)}\n{ENGINE_KEY} = {json.dumps(engine)}\n"
                    f"{SWEEP_KEY} = {json.dumps(str(sweep or ''))}\n")  # fmt: skip
    return path


CLIENTAPP_ENV = "FEDWSA_CLIENTAPP"


def stage_app(dest: Path) -> Path:
    """Copy the Flower app's files (``fab-include`` in ``pyproject.toml``) into ``dest``.

    ``flwr run <dir>`` (Flower 1.42, ``flwr.cli.utils.collect_files``) walks and resolves
    every file under ``<dir>`` before it filters them by ``fab-include``: given the
    project folder, that is the virtual environment, downloaded data and every earlier
    run's outputs (47,000 files, ~8 s on the development machine, growing with each run).
    The staged copy holds only the ~25 files that go into the FAB, so the FAB is the same.

    ``$FEDWSA_CLIENTAPP=<package.module>:<attribute>`` runs another ClientApp of this
    project instead of ``clients.client_app:app`` (its package's files join the FAB): the
    tests' misbehaving clients (``tests/faulty_client_app.py``) use it.
    """
    text = (PROJECT_DIR / "pyproject.toml").read_text()
    meta = tomli.loads(text)
    patterns = list(meta["tool"]["flwr"]["app"]["fab-include"])
    override = os.environ.get(CLIENTAPP_ENV, "")
    if override:
        package = override.split(":", 1)[0].split(".")[0]
        patterns.append(f"{package}/**/*.py")
        default = meta["tool"]["flwr"]["app"]["components"]["clientapp"]
        text = text.replace(f'clientapp = "{default}"', f'clientapp = "{override}"')
        text = text.replace("fab-include = [", f'fab-include = ["{package}/**/*.py", ', 1)
    for pattern in patterns:
        for src in sorted(PROJECT_DIR.glob(pattern)):
            if src.is_file():
                target = dest / src.relative_to(PROJECT_DIR)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, target)
    if override:
        (dest / "pyproject.toml").write_text(text)
    return dest


def read_status(out_dir: Path) -> tuple[dict[str, Any], str]:
    """``metrics.json`` of ``out_dir`` and its status (``missing`` if it cannot be read)."""
    try:
        metrics = json.loads((out_dir / "metrics.json").read_text())
        return metrics, str(metrics["status"])
    except (OSError, ValueError, KeyError, TypeError):
        return {}, "missing"


def submit(
    procs: list[subprocess.Popen[bytes]], env: dict[str, str], connection: str,
    run_config: Path, log: Path, out_dir: Path, *, federation_config: str = "", verbose: bool = False,
) -> int:  # fmt: skip
    """``flwr run --stream``: every line goes to ``log``; progress lines also to stdout.

    Returns ``flwr run``'s exit code, or 0 as soon as the ServerApp has printed its last
    line and ``metrics.json`` says ``finished``: every result is written then, so all of
    ``procs`` are killed at once instead of waiting for Flower's own teardown of Ray, the
    log stream and the SuperLink (~5 s, docs/PERFORMANCE.md).
    """
    proc = start_flwr_run(procs, env, connection, run_config, federation_config)
    assert proc.stdout is not None
    finished = lambda line: FINISHED in line and read_status(out_dir)[1] == "finished"  # noqa: E731
    if follow(proc.stdout, log, verbose, finished):
        for p in reversed(procs):
            stop_tree(p, force=True)
        return 0
    return proc.wait()


def start_flwr_run(
    procs: list[subprocess.Popen[bytes]],
    env: dict[str, str],
    connection: str,
    run_config: Path,
    federation_config: str,
) -> subprocess.Popen[bytes]:
    """``flwr run --stream`` of the staged app, its output (stdout and stderr) on a pipe."""
    app = stage_app(Path(env["FLWR_HOME"]) / "fab-src")
    cmd = ["flwr", "run", str(app), connection, "--run-config", str(run_config), "--stream"]
    if federation_config:
        cmd += ["--federation-config", federation_config]
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
    )
    procs.append(proc)
    return proc


def follow(stream: IO[bytes], log: Path, verbose: bool, last: Callable[[str], bool]) -> bool:
    """Copy the lines of ``stream`` to ``log`` and show the progress lines (all with
    ``verbose``) until ``last(line)`` is true (then True) or the stream ends (False)."""
    view = ProgressView()
    with log.open("a", encoding="utf-8") as f:
        logging = True
        for raw in stream:
            check_interrupted()
            line = strip_ansi(raw.decode(errors="replace")).rstrip()
            if logging:
                try:
                    f.write(line + "\n")
                    f.flush()
                except OSError as e:  # disk full: keep showing the run, stop logging it
                    logging = False
                    print(f"[fedwsa] cannot write {log} ({e.strerror}); no longer logging", flush=True)
            if verbose or _SHOW.search(line):
                view.show(line)
            if last(line):
                return True
    return False


def check_finished(out_dir: Path, log: Path, code: int) -> None:
    """Raise :class:`LaunchError` unless the ServerApp wrote a finished ``metrics.json``."""
    metrics, status = read_status(out_dir)
    if status == "failed" and metrics.get("error"):
        raise LaunchError(f"the run stopped: {metrics['error']} (see {log})")
    if code != 0 or status != "finished":
        error = last_error(log)
        why = f": {error}" if error else ""
        raise LaunchError(f"the run did not finish (flwr run exit {code}, metrics {status}){why}; see {log}")


AUTO_CLIENT_GPUS = 0.25
"""``client_gpus=-1`` on a CUDA machine: four clients share a GPU (see the README)."""


def client_gpus(cfg: ExperimentConfig) -> float:
    """The share of a GPU each simulated client asks Ray for (``client_gpus``; ``-1``:
    :data:`AUTO_CLIENT_GPUS` where this machine's ``device`` is CUDA, else 0)."""
    if cfg.client_gpus >= 0:
        return cfg.client_gpus
    return AUTO_CLIENT_GPUS if resolve_device(cfg.device).type == "cuda" else 0.0


def allocation() -> dict[str, Any]:
    """The CPUs and GPUs this job may use, which Ray must be told: on a batch cluster a job
    gets part of a node, and Ray left alone counts the whole node's (SLURM's cgroups do not
    change what Ray detects), so clients would oversubscribe the job's cores or wait for
    GPUs it does not have. CPUs: this process's affinity (what SLURM, ``taskset`` or a
    container allow), lowered to ``SLURM_CPUS_PER_TASK`` where SLURM sets it; GPUs: those
    CUDA shows this process (SLURM's ``--gres`` sets ``CUDA_VISIBLE_DEVICES``)."""
    import torch

    cpus, source = len(os.sched_getaffinity(0)), "CPU affinity"
    slurm = os.environ.get("SLURM_CPUS_PER_TASK", "")
    if slurm.isdigit() and 0 < int(slurm) < cpus:
        cpus, source = int(slurm), "SLURM_CPUS_PER_TASK"
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return {"cpus": cpus, "gpus": gpus, "cpus_from": source}


_SWEEP_RAY: dict[str, str] = {}  # this process's Ray for a sweep's runs: address, temp dir


def sweep_ray() -> str:
    """The address of a Ray head that the simulations of a Hydra multirun in this process
    share: started (with this job's allocation) by the first, stopped when the process
    exits, also on Ctrl-C or a failed run. Its processes are found by its own temp folder
    and address and stopped by PID (``ray stop`` would stop other users' Ray too)."""
    if "address" in _SWEEP_RAY:
        return _SWEEP_RAY["address"]
    alloc = allocation()
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's socket paths are bounded
    address = f"127.0.0.1:{free_port()}"
    _SWEEP_RAY.update(address=address, temp=temp)
    atexit.register(stop_sweep_ray)
    cmd = [str(Path(sys.executable).parent / "ray"), "start", "--head", "--port", address.split(":")[1],
           "--temp-dir", temp, "--include-dashboard=false", "--disable-usage-stats",
           "--num-cpus", str(alloc["cpus"]), "--num-gpus", str(alloc["gpus"])]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    if proc.returncode != 0:
        stop_sweep_ray()
        raise LaunchError(f"could not start the sweep's Ray: {last_error_line(proc.stderr + proc.stdout)}")
    print(f"[fedwsa] sweep: one Ray for all runs at {address} ({alloc['cpus']} CPUs, {alloc['gpus']} GPUs)",
          flush=True)  # fmt: skip
    return address


def stop_sweep_ray() -> None:
    """Stop the sweep's Ray (its processes, by PID) and remove its temp folder."""
    import psutil

    if "temp" not in _SWEEP_RAY:
        return
    procs = marked_processes((_SWEEP_RAY["temp"], _SWEEP_RAY["address"]))
    for p in procs:
        with contextlib.suppress(psutil.Error):
            p.kill()
    wait_dead(procs, 15)
    shutil.rmtree(_SWEEP_RAY["temp"], ignore_errors=True)
    _SWEEP_RAY.clear()


_SWEEP_LINK: dict[str, Any] = {}  # the sweep's SuperLink: its process, FLWR_HOME, environment


def sweep_superlink(ray_address: str) -> tuple[dict[str, str], subprocess.Popen[bytes]]:
    """The SuperLink (simulation mode) that the runs of a sweep in this process submit to,
    on the sweep's Ray: started by the first, stopped when the process exits."""
    if "proc" in _SWEEP_LINK:
        return _SWEEP_LINK["env"], _SWEEP_LINK["proc"]
    home = Path(tempfile.mkdtemp(prefix="fedwsa-flwr-"))
    env = flower_env(home)
    env["RAY_ADDRESS"] = ray_address
    procs: list[subprocess.Popen[bytes]] = []
    _SWEEP_LINK.update(home=home, env=env, procs=procs)
    atexit.register(stop_sweep_superlink)  # runs before stop_sweep_ray (registered earlier)
    port = free_port()
    _SWEEP_LINK["proc"] = start_superlink(procs, env, port, home / "superlink.log", simulation=True)
    write_connection(home, "fedwsa-sim", f"127.0.0.1:{port}")
    return env, _SWEEP_LINK["proc"]


def stop_sweep_superlink() -> None:
    stop_sweep_run()
    for proc in _SWEEP_LINK.get("procs", []):
        stop_tree(proc, force=True)
    if "home" in _SWEEP_LINK:
        shutil.rmtree(_SWEEP_LINK["home"], ignore_errors=True)
    _SWEEP_LINK.clear()


_SWEEP_RUN: dict[str, Any] = {}  # the sweep's Flower run: flwr run, its job folder, settings, next job


def sweep_run(cfg: ExperimentConfig, env: dict[str, str], fed: str) -> dict[str, Any]:
    """The Flower run that the sweep's jobs are posted to (``fedwsa.run.jobs``): started by
    the first job, and again when a job needs other simulation settings (``fed``: virtual
    nodes, client resources) than the run has, or the run has ended."""
    s = _SWEEP_RUN
    if s and s["fed"] == fed and s["proc"].poll() is None:
        return s
    stop_sweep_run()
    folder = Path(tempfile.mkdtemp(prefix="jobs-", dir=env["FLWR_HOME"]))
    run_config = write_run_config(cfg, folder / "run_config.toml", "simulation", sweep=folder)
    procs: list[subprocess.Popen[bytes]] = []
    proc = start_flwr_run(procs, env, "fedwsa-sim", run_config, fed)
    s.update(proc=proc, fed=fed, folder=folder, next=0)
    return s


def stop_sweep_run() -> None:
    """End the sweep's Flower run: ``stop`` for its ServerApp, then its processes (``flwr
    run`` and the simulation process the SuperLink started for it) are stopped, by PID."""
    import psutil

    if not _SWEEP_RUN:
        return
    jobs.stop(_SWEEP_RUN["folder"])
    stop_tree(_SWEEP_RUN["proc"], force=True)
    link = _SWEEP_LINK.get("proc")
    if link is not None:
        for child in psutil.Process(link.pid).children(recursive=True):
            with contextlib.suppress(psutil.Error):
                if "flwr-simulation" in " ".join(child.cmdline()):
                    for p in [*child.children(recursive=True), child]:
                        p.kill()
    _SWEEP_RUN.clear()


def simulate_in_sweep(cfg: ExperimentConfig) -> None:
    """:func:`simulate` for a job of a Hydra multirun in this process: posted to the sweep's
    Flower run, on the sweep's SuperLink and Ray (``sweep_ray``), unless the run names its
    own cluster or ``sweep_ray=false``. The sweep's Flower run keeps its simulation process,
    virtual nodes and Ray actors from job to job; a job interrupted or ending without its
    last line ends it (the next job starts another)."""
    if not cfg.sweep_ray or cfg.ray_address:
        simulate(cfg)
        return
    alloc = allocation()
    check_client_cpus(cfg, alloc)
    cfg = dataclasses.replace(cfg, ray_address=sweep_ray())
    ray = {**alloc, "address": cfg.ray_address, "shared_by_the_sweep": True}
    out = Path(cfg.out_dir)
    (out / "resources.json").write_text(json.dumps({"ray": ray}, indent=1))
    env, _ = sweep_superlink(cfg.ray_address)
    run = sweep_run(cfg, env, federation(cfg))
    n = run["next"]
    run["next"] += 1
    jobs.post(run["folder"], n, cfg.to_json())
    log = out / "flower.log"
    ended = False
    try:
        ended = follow(run["proc"].stdout, log, cfg.verbose, lambda ln: ln.strip() == f"{jobs.JOB_END}{n}")
    finally:
        if not ended:  # interrupted, or the Flower run died: nothing of it may go on
            code = run["proc"].poll()
            stop_sweep_run()
    check_finished(out, log, 0 if ended else (code if code is not None else 1))


def submit_simulation(cfg: ExperimentConfig, procs: list[subprocess.Popen[bytes]], env: dict[str, str],
                      federation_config: str) -> None:  # fmt: skip
    """Submit ``cfg`` to the simulation SuperLink of ``env`` (connection ``fedwsa-sim``),
    show its progress, and raise :class:`LaunchError` unless it finished."""
    out = Path(cfg.out_dir)
    log = out / "flower.log"
    run_config = write_run_config(cfg, out / "run_config.toml", "simulation")
    code = submit(procs, env, "fedwsa-sim", run_config, log, out, federation_config=federation_config,
                  verbose=cfg.verbose)  # fmt: skip
    check_finished(out, log, code)


def federation(cfg: ExperimentConfig) -> str:
    """Flower's simulation settings for ``cfg`` (``flwr run --federation-config``)."""
    return (
        f"num-supernodes={cfg.node_pool} client-resources-num-cpus={cfg.client_cpus} "
        f"client-resources-num-gpus={float(client_gpus(cfg))}"
    )


def check_client_cpus(cfg: ExperimentConfig, alloc: dict[str, Any]) -> None:
    if cfg.client_cpus > alloc["cpus"]:
        raise LaunchError(
            f"client_cpus={cfg.client_cpus} exceeds the {alloc['cpus']} CPUs this job may use "
            f"({alloc['cpus_from']}): no client could start; lower client_cpus"
        )


def simulate(cfg: ExperimentConfig) -> None:
    """Run ``cfg`` on Flower's Simulation Engine; results land in ``cfg.out_dir``.

    ``ray_address`` empty: Flower starts Ray on this machine; else the simulation joins
    that Ray cluster (Ray's own ``RAY_ADDRESS``, read by the simulation process that the
    SuperLink starts), and its clients run on every node of it."""
    out = Path(cfg.out_dir)
    with tempfile.TemporaryDirectory(prefix="fedwsa-flwr-") as home, process_group() as procs:
        env = flower_env(Path(home))
        env.pop("RAY_ADDRESS", None)  # a user's own RAY_ADDRESS must not redirect the run
        if cfg.ray_address:
            env["RAY_ADDRESS"] = cfg.ray_address
        port = free_port()
        start_superlink(procs, env, port, out / "superlink.log", simulation=True)
        write_connection(Path(home), "fedwsa-sim", f"127.0.0.1:{port}")
        fed = federation(cfg)
        if not cfg.ray_address:  # Flower starts Ray: with this job's share of the machine
            alloc = allocation()
            check_client_cpus(cfg, alloc)
            fed += f" init-args-num-cpus={alloc['cpus']} init-args-num-gpus={alloc['gpus']}"
            (out / "resources.json").write_text(json.dumps({"ray": alloc}, indent=1))
        submit_simulation(cfg, procs, env, fed)


def register_nodes(folder: Path, n: int, superlink: str, certs: Path | None) -> tuple[list[Path], list[int]]:
    """Make ``n`` SuperNode key pairs in ``folder`` and register their public keys with the
    SuperLink (concurrently: each is a ``flwr`` command); the private keys' paths and the
    node ids the SuperLink gave them."""
    from concurrent.futures import ThreadPoolExecutor

    from experiments.nodekey import make_key, register

    pubs = [folder / f"supernode-{i}.pub" for i in range(n)]  # a resumed run's keys are reused
    pubs = [p if p.is_file() and p.with_suffix("").is_file() else make_key(folder, p.stem) for p in pubs]
    with ThreadPoolExecutor(max_workers=min(n, 8)) as pool:
        ids = list(pool.map(lambda pub: register(pub, superlink, certs), pubs))
    return [p.with_suffix("") for p in pubs], ids


def federate(cfg: ExperimentConfig) -> None:
    """Run ``cfg`` as a real federation: one SuperLink and one SuperNode process per client.

    With TLS, SuperNode authentication is on unless ``federation.auth=false``: one key
    pair per SuperNode in ``<out_dir>/keys`` (owner-only), the SuperLink started with
    authentication, each public key registered before its SuperNode starts with its
    private key; nothing else can join. With ``federation.superlink`` set, nothing is
    started: the run is submitted to that SuperLink (its SuperNodes were started and
    registered by hand, on other machines: ``experiments.nodekey``).
    """
    from experiments.certs import check_certs, make_certs

    out, fed = Path(cfg.out_dir), cfg.federation
    folder = Path(fed.certs).expanduser().resolve() if fed.certs else None
    if fed.superlink:
        if folder is None and not fed.insecure:
            raise LaunchError(
                "federation.certs: a remote SuperLink needs the folder holding its ca.crt "
                "(or federation.insecure=true for plain HTTP)"
            )
        certs = check_certs(folder, ("ca.crt",)) if folder else None
    elif folder:
        certs = check_certs(folder)
    else:
        certs = make_certs(out / "certs", nodes=cfg.num_clients) if fed.tls else None
    logs = out / "logs"
    logs.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="fedwsa-flwr-") as home, process_group() as procs:
        env = flower_env(Path(home))
        if fed.superlink:
            probe(fed.superlink)
            address = fed.superlink
        else:
            port = fed.port or free_port()
            auth = fed.auth and certs is not None
            start_superlink(procs, env, port, logs / "superlink.log", simulation=False, certs=certs,
                            host=fed.host, auth=auth)  # fmt: skip
            address = f"127.0.0.1:{port}"
            keys, node_ids = (
                register_nodes(out / "keys", cfg.num_clients, address, certs) if auth else ([], [])
            )
            nodes = [start_supernode(procs, env, address, i, cfg.num_clients, logs / f"supernode-{i}.log",
                                     certs=certs, key=keys[i] if auth else None)
                     for i in range(cfg.num_clients)]  # fmt: skip
            record = {"superlink": address, "tls": certs is not None, "auth": auth, "node_ids": node_ids,
                      "supernodes": {i: p.pid for i, p in enumerate(nodes)}}  # fmt: skip
            (out / "federation.json").write_text(json.dumps(record, indent=1))
        write_connection(Path(home), "fedwsa", address, certs / "ca.crt" if certs else None)
        log = logs / "flower.log"
        run_config = write_run_config(cfg, out / "run_config.toml")
        code = submit(procs, env, "fedwsa", run_config, log, out, verbose=cfg.verbose)
        if not fed.superlink:
            check_finished(out, log, code)
        elif code != 0:
            raise LaunchError(f"flwr run exited with {code}; see {log}")
