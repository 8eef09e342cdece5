"""Submitting a run to a SuperLink: the run config that carries the experiment, the staged
Flower app, ``flwr run --stream`` and following its output, and whether the run finished."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import IO

import tomli  # Flower's own dependency; tomllib needs Python 3.11

from experiments.launch import PROJECT_DIR
from experiments.launch.processes import (
    LaunchError,
    ProgressView,
    check_interrupted,
    last_error,
    stop_tree,
    strip_ansi,
)
from fedwsa.run.config import ExperimentConfig
from fedwsa.run.results import RunFolder
from fedwsa.run.wire import ENGINE_KEY, FINISHED, RUN_CONFIG_KEY, SWEEP_KEY

_SHOW = re.compile(r"\[fedwsa\]|ERROR|Error|Exception|Traceback")


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
    finished = lambda line: FINISHED in line and RunFolder(out_dir).status() == "finished"  # noqa: E731
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
    run = RunFolder(out_dir)
    status = run.status()
    if status == "failed" and run.error():
        raise LaunchError(f"the run stopped: {run.error()} (see {log})")
    if code != 0 or status != "finished":
        error = last_error(log)
        why = f": {error}" if error else ""
        raise LaunchError(f"the run did not finish (flwr run exit {code}, metrics {status}){why}; see {log}")
