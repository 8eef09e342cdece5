"""Typed experiment configuration, validated in one place.

The Hydra config (``experiments/conf``) is resolved to a plain dict at the entry point
and turned into an :class:`ExperimentConfig` here; library code never sees a
``DictConfig``. The same JSON travels to the ServerApp and the ClientApps through
Flower's run config, in simulation and deployment alike.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from fedwsa.data import DATASETS
from fedwsa.device import DEVICE_PATTERN, PRECISIONS
from fedwsa.models import MODELS, check_input
from fedwsa.partition import PARTITIONS
from fedwsa.run.errors import ConfigError
from fedwsa.run.errors import check as _check
from fedwsa.run.errors import choice as _choice
from fedwsa.run.threats import AttackConfig, PrivacyConfig, check_attack, check_privacy

ENGINES: tuple[str, ...] = ("simulation", "inprocess")
TRAIN_SIZES = {"digits": 1437, "fmnist": 60000, "mnist": 60000, "cifar10": 50000, "cifar100": 50000}
INPUT_SHAPES = {"digits": (1, 8, 8), "fmnist": (1, 28, 28), "mnist": (1, 28, 28),
                "cifar10": (3, 32, 32), "cifar100": (3, 32, 32), "synthetic": (1, 1, 60)}  # fmt: skip


@dataclass(frozen=True, init=False)
class StrategyConfig:
    """The algorithm by name and its own knobs, as the config file ``strategy/<name>.yaml``
    and the command line give them (``strategy=fedwsa strategy.wsa_lambda=3``).

    The core keeps the knobs as plain values; their types, defaults and checks belong to
    the algorithm's settings class on the server side (``strategies.registry``), which the
    launcher and the ServerApp apply. ``name`` is a registered algorithm, or an importable
    module of the user's own that defines ``UNIT`` (``strategy.name=my_pkg.my_algo``)."""

    name: str
    knobs: tuple[tuple[str, Any], ...]  # sorted (key, value) pairs

    def __init__(self, name: str = "fedavg", **knobs: Any) -> None:
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "knobs", tuple(sorted(knobs.items())))

    def get(self, key: str, default: Any = None) -> Any:
        return dict(self.knobs).get(key, default)

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, **dict(self.knobs)}


@dataclass(frozen=True)
class DatasetConfig:
    name: str = "digits"
    root: str = "data"
    download: bool = True
    model: str = "mlp"  # the dataset's default model, used by ``model=auto``
    alpha: float = 1.0  # synthetic only: how much the clients' models differ (FedProx's alpha)
    beta: float = 1.0  # synthetic only: how much the clients' inputs differ (FedProx's beta)


@dataclass(frozen=True)
class ModelConfig:
    name: str = "mlp"
    hidden: int = 64  # mlp only


@dataclass(frozen=True)
class PartitionConfig:
    kind: str = "dirichlet"
    alpha: float = 0.5  # dirichlet: smaller = more skewed
    labels_per_client: int = 2  # pathological only
    min_size: int = 10  # every client gets at least this many samples
    max_retries: int = 1000
    path: str = ""  # kind=file: a JSON split in NIID-Bench's format (fedwsa/run/splits.py)


@dataclass(frozen=True)
class FederationConfig:
    """Deployment (``experiments.federate``) settings; the simulation ignores them."""

    tls: bool = False
    certs: str = ""  # folder with ca.crt, server.pem, server.key; empty: generate for the run
    superlink: str = ""  # host:port of a running SuperLink to submit to; empty: start one locally
    insecure: bool = False  # allow a remote ``superlink`` without TLS
    auth: bool = True  # with TLS: only SuperNodes whose key the SuperLink registered may join
    host: str = "127.0.0.1"  # interface the local SuperLink listens on
    port: int = 0  # its port; 0 picks a free one


@dataclass(frozen=True)
class TensorboardConfig:
    enabled: bool = False
    log_dir: str = ""  # empty: <out_dir>/tensorboard


@dataclass(frozen=True)
class WandbConfig:
    enabled: bool = False
    project: str = "fedwsa"
    entity: str = ""  # empty: W&B's default entity
    mode: str = "offline"  # offline (files in <out_dir>/wandb, `wandb sync` later) | online
    dir: str = ""  # empty: <out_dir>


@dataclass(frozen=True)
class MlflowConfig:
    enabled: bool = False
    uri: str = ""  # empty: sqlite:///mlflow.db in the current folder (MLflow 3's default store)
    experiment: str = "fedwsa"


@dataclass(frozen=True)
class TrackingConfig:
    """Experiment trackers (server side; never change results): ``tracking=[tensorboard,mlflow]``."""

    tensorboard: TensorboardConfig = field(default_factory=TensorboardConfig)
    wandb: WandbConfig = field(default_factory=WandbConfig)
    mlflow: MlflowConfig = field(default_factory=MlflowConfig)

    def enabled(self) -> list[str]:
        return [n for n in ("tensorboard", "wandb", "mlflow") if getattr(self, n).enabled]


@dataclass(frozen=True)
class Seeds:
    """One named seed per source of randomness."""

    model_init: int = 0
    partition: int = 0
    sampling: int = 0
    train: int = 0
    validation: int = 0  # which part of train is held out (fixed across a sweep's seeds)


@dataclass(frozen=True)
class ExperimentConfig:
    """The whole experiment, and the one source of every default: Hydra's config
    (``experiments/conf``) starts from ``ExperimentConfig().as_dict()``."""

    strategy: StrategyConfig = field(default_factory=StrategyConfig)
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    partition: PartitionConfig = field(default_factory=PartitionConfig)
    seeds: Seeds = field(default_factory=Seeds)
    federation: FederationConfig = field(default_factory=FederationConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    attack: AttackConfig = field(default_factory=AttackConfig)
    privacy: PrivacyConfig = field(default_factory=PrivacyConfig)
    seed: int = 0  # base seed; the Hydra config makes each of ``seeds`` follow it
    num_clients: int = 5
    num_rounds: int = 5
    fraction_train: float = 1.0  # fraction of clients sampled each round, in (0, 1]
    epochs: int = 1  # local epochs per round
    local_steps: int = 0  # > 0: exactly this many local SGD steps per round instead
    batch_size: int = 32
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 0.0
    validation: float = 0.0  # > 0: hold out this fraction of train and evaluate on it (tuning)
    eval_batch_size: int = 1000
    client_threads: int = 1  # torch threads per client (avoids oversubscription)
    client_cpus: int = 1  # Ray CPUs per simulated client (2 cores: 2 clients at once)
    min_fit_clients: int = 1  # a round with fewer good replies is skipped
    node_wait_s: float = 120.0  # bounded wait for nodes to connect / come back
    round_timeout_s: float = 3600.0  # bounded wait for a round's replies
    checkpoint_every: int = 1  # write a checkpoint every N rounds (and after the last)
    resume: bool = False  # continue out_dir's run from its last good checkpoint (or resume=<folder>)
    max_failed_rounds: int = 3  # stop after this many skipped rounds in a row
    update_clip: float = 0.0  # >= 1: clip each update to this multiple of the median norm; 0: off
    verbose: bool = False  # show Flower's own INFO logs
    device: str = "auto"  # auto | cpu | cuda | cuda:N, resolved by each process (fedwsa/device.py)
    precision: str = "fp32"  # fp32 | bf16 (autocast of forward passes; parameters stay fp32)
    deterministic: bool = False  # deterministic cuDNN / torch kernels (bit-identical GPU runs)
    client_gpus: float = -1.0  # share of a GPU per simulated client; -1: 0.25 on CUDA, 0 on CPU
    engine: str = "simulation"  # experiments.run: simulation (Flower + Ray) | inprocess (one process)
    ray_address: str = ""  # simulation: "" starts Ray here; auto or host:port joins a Ray cluster
    sim_nodes: int = 0  # simulation: virtual SuperNodes; 0: as many as clients sampled per round
    sweep_ray: bool = True  # a multirun's simulations share one Ray, SuperLink and Flower run
    out_dir: str = ""

    @property
    def sample_size(self) -> int:
        """Clients trained per round: ``max(1, int(num_clients * fraction_train))``."""
        return max(1, int(self.num_clients * self.fraction_train))

    @property
    def node_pool(self) -> int:
        """Virtual SuperNodes of a simulation (and of ``engine=inprocess``): each round, each
        sampled client's partition travels in its message to a node of this pool, so the
        number of nodes does not grow with ``num_clients`` (``sim_nodes``; 0: the sample size)."""
        return self.sim_nodes or self.sample_size

    def as_dict(self) -> dict[str, Any]:
        """Plain nested dict (the strategy's knobs flat beside its name), as in ``config.json``."""
        return _plain(self)

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), sort_keys=True)

    def identity(self) -> str:
        """The JSON that a checkpoint must match to be resumed: all but what does not change
        results (``resume``, ``verbose``, ``tracking``, and where the clients run: ``engine``,
        ``ray_address``, ``client_gpus``, ``sim_nodes``)."""
        neutral = dataclasses.replace(
            self, resume=False, verbose=False, engine="simulation", ray_address="", client_gpus=-1.0
        )
        d = neutral.as_dict()
        # absent, not defaulted: checkpoints written before these keys existed stay resumable
        del d["tracking"], d["sim_nodes"], d["sweep_ray"]
        for key, default in (("attack", AttackConfig()), ("privacy", PrivacyConfig())):
            if getattr(self, key) == default:
                del d[key]
        if self.dataset.name != "synthetic":
            del d["dataset"]["alpha"], d["dataset"]["beta"]
        return json.dumps(d, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ExperimentConfig:
        return from_dict(json.loads(text))


def _plain(obj: Any) -> Any:
    """``dataclasses.asdict``, with a :class:`StrategyConfig` as its flat dict."""
    if isinstance(obj, StrategyConfig):
        return obj.as_dict()
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    return obj


def _strategy(data: Any, key: str) -> StrategyConfig:
    """The strategy section: a name and plain knob values (the registry types them)."""
    if not isinstance(data, dict):
        raise ConfigError(key, "must be a mapping")
    name = data.get("name", "fedavg")
    if not isinstance(name, str) or not name:
        raise ConfigError(key + ".name", f"must be an algorithm's name, got {name!r}")
    knobs = {k: v for k, v in data.items() if k != "name"}
    for k, v in knobs.items():
        if not isinstance(v, bool | int | float | str):
            raise ConfigError(f"{key}.{k}", f"must be a number, a string or true/false, got {v!r}")
    return StrategyConfig(name, **knobs)


def build_dataclass(cls: type, data: Any, prefix: str) -> Any:
    """Build dataclass ``cls`` from a dict, checking key names and value types (a key's
    type is its default's); ``prefix`` names the section in errors (``"strategy."``)."""
    if not isinstance(data, dict):
        raise ConfigError(prefix.rstrip(".") or "config", "must be a mapping")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(prefix + unknown[0], f"unknown key; known keys: {', '.join(fields) or 'none'}")
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        default = getattr(cls(), name)
        key = prefix + name
        if isinstance(default, StrategyConfig):
            kwargs[name] = _strategy(value, key)
        elif dataclasses.is_dataclass(default):
            kwargs[name] = build_dataclass(type(default), value, key + ".")
        elif isinstance(default, bool):
            if not isinstance(value, bool):
                raise ConfigError(key, f"must be true or false, got {value!r}")
            kwargs[name] = value
        elif isinstance(default, int):
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(key, f"must be an integer, got {value!r}")
            kwargs[name] = value
        elif isinstance(default, float):
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(key, f"must be a number, got {value!r}")
            kwargs[name] = float(value)
        else:
            if not isinstance(value, str):
                raise ConfigError(key, f"must be a string, got {value!r}")
            kwargs[name] = value
    return cls(**kwargs)


def validate(c: ExperimentConfig) -> ExperimentConfig:
    """Check ranges and combinations; raise :class:`ConfigError` naming the first bad key."""
    p = c.partition
    _choice("dataset.name", c.dataset.name, DATASETS)
    _choice("model.name", c.model.name, MODELS)
    _choice("partition.kind", p.kind, (*PARTITIONS, "file"))
    if p.kind == "file" and not p.path:
        raise ConfigError("partition.path", "partition=file needs the split file: partition.path=<json>")
    _choice("precision", c.precision, PRECISIONS)
    _choice("engine", c.engine, ENGINES)
    _choice("tracking.wandb.mode", c.tracking.wandb.mode, ("offline", "online"))
    _check("device", DEVICE_PATTERN.fullmatch(c.device) is not None, "auto, cpu, cuda or cuda:N", c.device)
    _check("client_gpus", c.client_gpus == -1 or c.client_gpus >= 0, "-1 (auto) or >= 0", c.client_gpus)
    for key, value in [
        ("seed", c.seed),
        *((f"seeds.{k}", v) for k, v in dataclasses.asdict(c.seeds).items()),
    ]:
        _check(key, value >= 0, ">= 0", value)
    for key, value in [
        ("num_clients", c.num_clients), ("num_rounds", c.num_rounds), ("epochs", c.epochs),
        ("batch_size", c.batch_size), ("eval_batch_size", c.eval_batch_size),
        ("client_threads", c.client_threads), ("client_cpus", c.client_cpus),
        ("model.hidden", c.model.hidden), ("partition.labels_per_client", p.labels_per_client),
        ("partition.min_size", p.min_size), ("partition.max_retries", p.max_retries),
        ("min_fit_clients", c.min_fit_clients), ("checkpoint_every", c.checkpoint_every),
        ("max_failed_rounds", c.max_failed_rounds),
    ]:  # fmt: skip
        _check(key, value >= 1, ">= 1", value)
    _check("local_steps", c.local_steps >= 0, ">= 0 (0: use epochs)", c.local_steps)
    _check("fraction_train", 0 < c.fraction_train <= 1, "in (0, 1]", c.fraction_train)
    _check("lr", c.lr > 0, "> 0", c.lr)
    _check("momentum", 0 <= c.momentum < 1, "in [0, 1)", c.momentum)
    _check("weight_decay", c.weight_decay >= 0, ">= 0", c.weight_decay)
    _check("partition.alpha", p.alpha > 0, "> 0", p.alpha)
    _check("validation", 0 <= c.validation < 0.5, "in [0, 0.5)", c.validation)
    _check("node_wait_s", c.node_wait_s > 0, "> 0", c.node_wait_s)
    _check("federation.port", 0 <= c.federation.port <= 65535, "in [0, 65535]", c.federation.port)
    _check("round_timeout_s", c.round_timeout_s > 0, "> 0", c.round_timeout_s)
    _check("update_clip", c.update_clip == 0 or c.update_clip >= 1, "0 (off) or >= 1", c.update_clip)
    check_attack(c.attack, c.num_clients)
    check_privacy(c.privacy, c.sample_size)
    if c.sim_nodes and c.sim_nodes < c.sample_size:
        raise ConfigError(
            "sim_nodes",
            f"{c.sim_nodes} virtual nodes cannot take the {c.sample_size} clients sampled per round; "
            "use 0 (as many as sampled) or more",
        )
    if c.min_fit_clients > c.sample_size:
        raise ConfigError(
            "min_fit_clients",
            f"{c.min_fit_clients} exceeds the {c.sample_size} clients sampled per round "
            "(num_clients * fraction_train)",
        )
    _check("dataset.alpha", c.dataset.alpha >= 0, ">= 0", c.dataset.alpha)
    _check("dataset.beta", c.dataset.beta >= 0, ">= 0", c.dataset.beta)
    n = int(TRAIN_SIZES.get(c.dataset.name, 0) * (1 - c.validation))
    need = c.num_clients * (1 if p.kind in ("iid", "file") else p.min_size)
    if c.dataset.name != "synthetic" and need > n:  # synthetic: each client has its own data
        raise ConfigError(
            "num_clients",
            f"{c.num_clients} clients need {need} samples (partition.min_size={p.min_size}) "
            f"but {c.dataset.name} has {n} training samples",
        )
    try:
        check_input(c.model.name, INPUT_SHAPES[c.dataset.name])
    except ValueError as e:
        raise ConfigError("model.name", f"{e} ({c.dataset.name})") from None
    return c


def from_dict(data: dict[str, Any]) -> ExperimentConfig:
    """Build and validate an :class:`ExperimentConfig` from a resolved plain dict."""
    return validate(build_dataclass(ExperimentConfig, data, ""))
