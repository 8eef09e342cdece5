"""What every entry point does before starting Flower: validate, resolve, record."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib.metadata import version
from pathlib import Path
from typing import Any, NoReturn

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from experiments.launch import PROJECT_DIR
from experiments.launch.processes import LaunchError, check_interrupted, interrupting_signal, on_interrupt
from fedwsa.data import DatasetUnavailable
from fedwsa.device import DeviceUnavailable, resolve_device
from fedwsa.partition import PartitionError
from fedwsa.privacy import CENTRAL
from fedwsa.run import checkpoint
from fedwsa.run.checkpoint import CheckpointError
from fedwsa.run.config import ConfigError, ExperimentConfig, from_dict
from fedwsa.run.factory import experiment_data, new_model, partition_sizes, release_data
from fedwsa.run.results import RunFolder, mark_interrupted
from fedwsa.run.splits import read_split
from fedwsa.run.tracking import missing_extras, mlflow_uri
from strategies import registry

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"
GROUPS = ("strategy", "dataset", "model", "partition", "experiment", "tracking", "attack", "privacy")

# Every key's default, from the one place that defines them (``conf/config.yaml`` starts
# from this node; the option files only hold what they change).
_DEFAULTS = ExperimentConfig().as_dict()
ConfigStore.instance().store(name="fedwsa_defaults", node=_DEFAULTS)
# experiments.connect (conf/connect.yaml) shares the model and partition option files
ConfigStore.instance().store(
    name="fedwsa_connect_defaults", node={k: _DEFAULTS[k] for k in ("model", "partition")}
)


def fail(message: str, code: int) -> NoReturn:
    print(f"error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(code)


def preflight_groups(argv: list[str]) -> None:
    """Reject unknown keys (``foo=1``) and group options (``strategy=foo``) with exit code 2.

    Hydra's own messages for these are several lines and exit with 1.
    """
    chosen = ["fedwsa"]  # conf/config.yaml's default
    for arg in argv:
        if arg.startswith("strategy="):
            chosen = arg.split("=", 1)[1].strip("[]").split(",")
        if arg.startswith("experiment="):  # a preset may choose the strategy: Hydra and the registry judge
            chosen = []
    for arg in argv:
        key = arg.split("=", 1)[0]
        plain = "=" in arg and key[:1].isalpha() and not key.startswith(("hydra.", "hydra/"))
        if plain and key.startswith("strategy.") and key != "strategy.name":
            _check_knob(key, chosen)
        elif plain and key not in GROUPS and not _known(ExperimentConfig, key.split(".")):
            fail(f"{key}: unknown key; see experiments/conf/ for the keys", 2)
        m = re.fullmatch(r"(\w+)=\[?([\w,.\-]*)\]?", arg)
        if not m or m.group(1) not in GROUPS:
            continue
        group = m.group(1)
        allowed = sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))
        for value in filter(None, m.group(2).split(",")):
            if value not in allowed:
                fail(f"{group}: unknown option {value!r}; allowed: {', '.join(allowed)}", 2)


def preflight_dirs(argv: list[str]) -> None:
    """An output folder that cannot be written: exit 2 before Hydra tries (its error is a
    traceback)."""
    for arg in argv:
        key, _, value = arg.partition("=")
        if key in ("hydra.run.dir", "hydra.sweep.dir", "out_dir", "resume") and value:
            if key == "resume" and value.lower() in ("true", "false"):
                continue
            problem = not_a_run(Path(value)) if key == "resume" else None
            problem = problem or unwritable(Path(value).expanduser())
            if problem:
                fail(f"{key}: {problem}", 2)


def not_a_run(folder: Path) -> str | None:
    """Why ``resume=<folder>`` cannot continue a run there, or None: it must hold one (its
    ``config.json`` or checkpoints). A mistyped path is refused rather than started afresh."""
    folder = folder.expanduser()
    if not folder.is_dir():
        return f"{folder} is not a folder; give the output folder of the run to continue"
    if not (folder / "config.json").is_file() and not checkpoint.folder(folder).is_dir():
        return (
            f"{folder} holds no run (no config.json, no checkpoints/); "
            "give the output folder of the run to continue"
        )
    return None


def unwritable(path: Path) -> str | None:
    """Why ``path`` (a folder, existing or to be made) cannot be written, or None."""
    p = path.resolve()
    while not p.exists() and p != p.parent:
        p = p.parent
    if not p.is_dir():
        return f"cannot create a folder under {p}: not a directory"
    if not os.access(p, os.W_OK | os.X_OK):
        return f"cannot write to {p} (permission denied)"
    return None


def _check_knob(key: str, chosen: list[str]) -> None:
    """``strategy.<knob>=``: a knob of each registered algorithm chosen (a user's own
    algorithm's knobs are checked by its settings class, after Hydra)."""
    for name in chosen:
        if name in registry.UNITS:
            knobs = registry.defaults(name)
            if key.removeprefix("strategy.") not in knobs:
                fail(f"{key}: not a knob of {name} (its knobs: {', '.join(knobs) or 'none'})", 2)


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


def machine() -> dict[str, Any]:
    """Where the launcher ran. Results are bit-identical for a seed on one machine; another
    CPU may pick other float kernels and differ in the last digits (docs/RESULTS.md), so
    the record says which CPU, which of torch's CPU kernel levels, and which GPUs."""
    import platform

    import torch

    cpu = platform.processor() or platform.machine()
    try:
        names = [x for x in Path("/proc/cpuinfo").read_text().splitlines() if x.startswith("model name")]
        cpu = names[0].split(":", 1)[1].strip() if names else cpu
    except OSError:
        pass
    gpus = (
        [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        if torch.cuda.is_available()
        else []
    )
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_cpu_kernels": torch.backends.cpu.get_cpu_capability(),
        "gpus": gpus,
    }


def already_finished(exp: ExperimentConfig) -> bool:
    """True when ``out_dir`` holds a finished run of exactly this config (sweeps skip it)."""
    run = RunFolder(exp.out_dir)
    config = run.config()
    if run.status() != "finished" or not config:
        return False
    try:
        stored = from_dict(config)
    except (ConfigError, ValueError, KeyError, TypeError):
        return False
    return stored.identity() == exp.identity()


def check_resume(exp: ExperimentConfig) -> None:
    """Before anything starts: what ``resume`` will continue from, or why it cannot.

    Without ``resume``, an unfinished run's checkpoints in ``out_dir`` are never
    overwritten silently: the run is refused.
    """
    files = sorted(checkpoint.folder(exp.out_dir).glob("round-*.ckpt"))
    if not exp.resume:
        if files:
            raise ConfigError(
                "resume",
                f"{exp.out_dir} holds checkpoints of an earlier run ({files[-1].name}); "
                "pass resume=true to continue it (same settings), or choose another output folder",
            )
        return
    ckpt, problems = checkpoint.load_latest(exp.out_dir, exp.identity())
    for p in problems:
        print(f"[fedwsa] warning: {p}", flush=True)
    if ckpt is None and files:
        raise CheckpointError(
            f"no usable checkpoint in {checkpoint.folder(exp.out_dir)}; "
            "remove that folder to start the run over"
        )
    if ckpt is None:
        print(f"[fedwsa] resume: no checkpoint in {exp.out_dir}, starting at round 1", flush=True)
    else:
        print(f"[fedwsa] resume: continuing after round {ckpt.round} of {exp.num_rounds}", flush=True)


def resolve(cfg: DictConfig) -> ExperimentConfig:
    """Resolve and validate the Hydra config; paths become absolute."""
    try:
        raw: Any = OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException as e:
        raise ConfigError(str(getattr(e, "full_key", "config") or "config"), str(e).splitlines()[0]) from e
    if isinstance(raw, dict) and isinstance(raw.get("resume"), str):  # resume=<run folder>
        problem = not_a_run(Path(raw["resume"]))
        if problem:
            raise ConfigError("resume", problem)
        raw["out_dir"], raw["resume"] = raw["resume"], True
    exp = from_dict(raw)
    registry.check(exp, new_model(exp))  # the algorithm, its knobs, its per-client state's memory
    exp = registry.canonical(exp)
    try:  # `cuda` where this machine has none: one line, before anything starts
        device = resolve_device(exp.device)
    except DeviceUnavailable as e:
        raise ConfigError("device", str(e)) from None
    if exp.client_gpus > 0 and device.type != "cuda" and not exp.ray_address:
        raise ConfigError(
            "client_gpus",
            f"{exp.client_gpus:g} asks Ray for GPU shares, but this machine has no CUDA device and no "
            "Ray cluster is named (ray_address); clients would wait forever: set client_gpus=0",
        )
    for name, extra in missing_extras(exp):
        raise ConfigError("tracking", f'{name} is not installed: pip install -e ".[{extra}]"')
    out = Path(exp.out_dir).expanduser().resolve()
    root = Path(exp.dataset.root).expanduser().resolve()
    t = exp.tracking
    tracking = dataclasses.replace(
        t,
        tensorboard=dataclasses.replace(t.tensorboard, log_dir=_abs(t.tensorboard.log_dir)),
        wandb=dataclasses.replace(t.wandb, dir=_abs(t.wandb.dir)),
        mlflow=dataclasses.replace(
            t.mlflow, uri=mlflow_uri(t.mlflow.uri) if t.mlflow.enabled else t.mlflow.uri
        ),
    )
    split = str(Path(exp.partition.path).expanduser().resolve()) if exp.partition.path else ""
    return dataclasses.replace(
        exp, out_dir=str(out), dataset=dataclasses.replace(exp.dataset, root=str(root)),
        partition=dataclasses.replace(exp.partition, path=split), tracking=tracking,
    )  # fmt: skip


def _abs(path: str) -> str:
    return str(Path(path).expanduser().resolve()) if path else ""


def warn_algorithm(exp: ExperimentConfig) -> None:
    """The algorithm's own warnings (FedWSA: lambda beyond the stable range), one line each."""
    u = registry.unit(exp.strategy.name)
    lines = u.warnings(exp, registry.settings(exp)) if u.warnings else []
    if exp.privacy.kind in CENTRAL and not u.dp_mean:
        lines.append(
            f"privacy={exp.privacy.kind} adds noise to {u.name}'s model, but its update is not a mean of the "
            "clipped replies (or it broadcasts state built from them): no epsilon is claimed "
            "(docs/privacy.md)"
        )
    for line in lines:
        print(f"[fedwsa] warning: {line}", flush=True)


def prepare(exp: ExperimentConfig) -> None:
    """Check the data and the split, and save config.json: everything that can be wrong in
    the input fails here, before any process starts."""
    out = Path(exp.out_dir)
    problem = unwritable(out)
    if problem:
        raise ConfigError("out_dir", problem)
    ds = experiment_data(exp)
    partition_sizes(exp)  # an impossible split fails now, not inside a client
    warn_algorithm(exp)
    split: dict[str, Any] = {}
    if exp.partition.kind == "file":
        note = read_split(exp.partition.path, exp.num_clients, len(ds.y_train), ds.name)[1]
        print(f"[fedwsa] {note}", flush=True)
        digest = hashlib.sha256(Path(exp.partition.path).read_bytes()).hexdigest()
        split = {"split_file": {"path": exp.partition.path, "sha256": digest}}
    record = {
        "config": exp.as_dict(),
        "code_version": code_version(),
        "data_source": ds.source,
        "evaluated_on": "validation" if exp.validation > 0 else "test",
        "versions": {p: version(p) for p in ("flwr", "torch", "numpy", "hydra-core")},
        "machine": machine(),
        "command": sys.argv,
        **split,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(record, indent=1))
    del ds
    release_data()  # the launcher itself trains nothing: free its copy for the run


def execute(cfg: DictConfig, launch: Callable[[ExperimentConfig], None], what: str) -> None:
    """What ``experiments.run`` and ``experiments.federate`` share: resolve, skip a finished
    run, check the inputs, ``launch``, and say where the results are."""
    with report_errors():
        exp = resolve(cfg)
        if already_finished(exp):
            print(f"[fedwsa] {exp.out_dir} already holds this finished run: skipped", flush=True)
            return
        check_resume(exp)
        prepare(exp)
        print(f"[fedwsa] {exp.strategy.name} on {exp.dataset.name}, {exp.num_clients} clients, "
              f"{exp.num_rounds} rounds, {what} -> {exp.out_dir}", flush=True)  # fmt: skip
        try:
            launch(exp)
        except KeyboardInterrupt:  # every process of the run is stopped by now: say so in its results
            mark_interrupted(exp.out_dir, interrupting_signal())
            raise
        print(f"[fedwsa] results written to {exp.out_dir}", flush=True)


@contextmanager
def report_errors() -> Iterator[None]:
    """User mistakes and known failures: one line on stderr and an exit code, no traceback."""
    signal.signal(signal.SIGINT, on_interrupt)
    signal.signal(signal.SIGTERM, on_interrupt)
    try:
        yield
        check_interrupted()  # an interrupt that a finaliser dropped still ends with 130
    except (ConfigError, PartitionError) as e:
        fail(str(e), 2)
    except (DatasetUnavailable, LaunchError, CheckpointError) as e:
        fail(str(e), 1)
    except OSError as e:  # a file or folder that cannot be read or written (disk full)
        fail(f"{e.strerror or e}: {e.filename}" if e.filename else str(e), 1)
    except KeyboardInterrupt:
        fail("interrupted; every process this run started has been stopped (resume=true continues it)", 130)
