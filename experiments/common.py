"""What every entry point does before starting Flower: validate, resolve, record."""

from __future__ import annotations

import dataclasses
import json
import re
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib.metadata import version
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from experiments.launch import PROJECT_DIR, LaunchError
from fedwsa.client import experiment_data, partitions
from fedwsa.config import ConfigError, ExperimentConfig, from_dict
from fedwsa.data import DatasetUnavailable
from fedwsa.partition import PartitionError

CONF_DIR = Path(__file__).resolve().parent / "conf"
GROUPS = ("strategy", "dataset", "model", "partition", "experiment")


def fail(message: str, code: int) -> NoReturn:
    print(f"error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(code)


def preflight_groups(argv: list[str]) -> None:
    """Reject unknown keys (``foo=1``) and group options (``strategy=foo``) with exit code 2.

    Hydra's own messages for these are several lines and exit with 1.
    """
    for arg in argv:
        key = arg.split("=", 1)[0]
        plain = "=" in arg and key[:1].isalpha() and not key.startswith("hydra.")
        if plain and key not in GROUPS and not _known(ExperimentConfig, key.split(".")):
            fail(f"{key}: unknown key; see experiments/conf/ for the keys", 2)
        m = re.fullmatch(r"(\w+)=([\w,.\-]+)", arg)
        if not m or m.group(1) not in GROUPS:
            continue
        group = m.group(1)
        allowed = sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))
        for value in m.group(2).split(","):
            if value not in allowed:
                fail(f"{group}: unknown option {value!r}; allowed: {', '.join(allowed)}", 2)


def _known(cls: type, path: list[str]) -> bool:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    if not path or path[0] not in fields:
        return False
    default = getattr(cls(), path[0])
    if dataclasses.is_dataclass(default):
        return len(path) == 1 or _known(type(default), path[1:])
    return len(path) == 1


def code_version() -> str:
    try:
        out = subprocess.run(
            ["git", "-C", str(PROJECT_DIR), "describe", "--always", "--dirty", "--abbrev=12"],
            capture_output=True, text=True, timeout=10, check=True,
        )  # fmt: skip
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def already_finished(exp: ExperimentConfig) -> bool:
    """True when ``out_dir`` holds a finished run of exactly this config (sweeps skip it)."""
    out = Path(exp.out_dir)
    try:
        done = json.loads((out / "metrics.json").read_text())["status"] == "finished"
        same = json.loads((out / "config.json").read_text())["config"] == dataclasses.asdict(exp)
    except (OSError, ValueError, KeyError):
        return False
    return done and same


def resolve(cfg: DictConfig) -> ExperimentConfig:
    """Resolve and validate the Hydra config; paths become absolute."""
    try:
        raw: Any = OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException as e:
        raise ConfigError(str(getattr(e, "full_key", "config") or "config"), str(e).splitlines()[0]) from e
    exp = from_dict(raw)
    out = Path(exp.out_dir).resolve()
    root = Path(exp.dataset.root).expanduser().resolve()
    return dataclasses.replace(
        exp, out_dir=str(out), dataset=dataclasses.replace(exp.dataset, root=str(root))
    )


def prepare(exp: ExperimentConfig) -> None:
    """Check the data and the split, and save config.json: everything that can be wrong in
    the input fails here, before any process starts."""
    out = Path(exp.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ds = experiment_data(exp)
    partitions(exp)  # an impossible split fails now, not inside a client
    record = {
        "config": dataclasses.asdict(exp),
        "code_version": code_version(),
        "data_source": ds.source,
        "evaluated_on": "validation" if exp.validation > 0 else "test",
        "versions": {p: version(p) for p in ("flwr", "torch", "numpy", "hydra-core")},
        "command": sys.argv,
    }
    (out / "config.json").write_text(json.dumps(record, indent=1))


def execute(cfg: DictConfig, launch: Callable[[ExperimentConfig], None], what: str) -> None:
    """What ``experiments.run`` and ``experiments.federate`` share: resolve, skip a finished
    run, check the inputs, ``launch``, and say where the results are."""
    with report_errors():
        exp = resolve(cfg)
        if already_finished(exp):
            print(f"[fedwsa] {exp.out_dir} already holds this finished run: skipped", flush=True)
            return
        prepare(exp)
        print(f"[fedwsa] {exp.strategy.name} on {exp.dataset.name}, {exp.num_clients} clients, "
              f"{exp.num_rounds} rounds, {what} -> {exp.out_dir}", flush=True)  # fmt: skip
        launch(exp)
        print(f"[fedwsa] results written to {exp.out_dir}", flush=True)


def _sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


@contextmanager
def report_errors() -> Iterator[None]:
    """User mistakes and known failures: one line on stderr and an exit code, no traceback."""
    signal.signal(signal.SIGTERM, _sigterm)
    try:
        yield
    except (ConfigError, PartitionError) as e:
        fail(str(e), 2)
    except (DatasetUnavailable, LaunchError, FileNotFoundError) as e:
        fail(str(e), 1)
    except KeyboardInterrupt:
        fail("interrupted; every process this run started has been stopped", 130)
