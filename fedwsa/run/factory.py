"""The experiment's data and model, built from its config, free of Flower: the dataset as
the experiment sees it (validation hold-out), the partitions, each client's training tensors,
and the initialised model. The server (evaluation, partition sizes), the clients
(:mod:`fedwsa.run.local_round`), the launcher's pre-check and the benchmarks all build them
here, cached once per process.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
from torch import Tensor, nn

from fedwsa.data import Dataset, holdout, load_dataset
from fedwsa.device import seed_torch
from fedwsa.models import build_model
from fedwsa.partition import partition
from fedwsa.run.config import ExperimentConfig
from fedwsa.run.splits import read_split
from fedwsa.synthetic import CLASSES, FEATURES, client_samples, client_sizes, eval_set


@lru_cache(maxsize=2)
def _data(name: str, root: str, download: bool, validation: float, seed: int) -> Dataset:
    ds = load_dataset(name, root, download)
    return holdout(ds, validation, seed) if validation > 0 else ds


@lru_cache(maxsize=2)
def _synthetic(num_clients: int, alpha: float, beta: float, seed: int, validation: bool) -> Dataset:
    x, y = eval_set(num_clients, alpha, beta, seed, validation)
    no_x, no_y = torch.zeros((0, 1, 1, FEATURES)), torch.zeros(0, dtype=torch.int64)
    x_eval, y_eval = torch.from_numpy(x).view(-1, 1, 1, FEATURES), torch.from_numpy(y)
    return Dataset(
        "synthetic", no_x, no_y, x_eval, y_eval, CLASSES, f"Synthetic({alpha:g}, {beta:g}), seed {seed}"
    )


def experiment_data(cfg: ExperimentConfig) -> Dataset:
    """The dataset as this experiment sees it: with ``validation > 0`` the evaluation split
    is a held-out part of the training data, and clients never see it (cached).

    ``synthetic``: only the evaluation set; each client's training data is generated when it
    trains (:func:`client_data`), from ``seeds.partition``."""
    d = cfg.dataset
    if d.name == "synthetic":
        return _synthetic(cfg.num_clients, d.alpha, d.beta, cfg.seeds.partition, cfg.validation > 0)
    return _data(d.name, d.root, d.download, cfg.validation, cfg.seeds.validation)


def release_data() -> None:
    """Drop the cached datasets and splits (the launcher's pre-check does not need them
    while the run's own processes train: ~220 MB for Fashion-MNIST)."""
    _data.cache_clear()
    _synthetic.cache_clear()
    _on_device.cache_clear()
    client_model.cache_clear()
    partitions.cache_clear()
    partition_sizes.cache_clear()


@lru_cache(maxsize=2)
def _on_device(cfg: ExperimentConfig, device: torch.device) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    ds = experiment_data(cfg)
    return ds.x_train.to(device), ds.y_train.to(device), ds.x_test.to(device), ds.y_test.to(device)


def device_data(cfg: ExperimentConfig, device: torch.device) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``x_train, y_train, x_test, y_test`` on ``device``, moved there once per process
    (the same tensors on the CPU)."""
    return _on_device(cfg, device)


@lru_cache(maxsize=4)
def partition_sizes(cfg: ExperimentConfig) -> list[int]:
    """Each client's number of training samples: what its reply must report."""
    if cfg.dataset.name == "synthetic":
        return [int(n) for n in client_sizes(cfg.num_clients, cfg.seeds.partition)]
    return [len(p) for p in partitions(cfg)]


@lru_cache(maxsize=4)
def partitions(cfg: ExperimentConfig) -> list[np.ndarray]:
    """All clients' train index sets (cached: computed once per process and config), or
    read from ``partition.path`` (``partition=file``)."""
    ds = experiment_data(cfg)
    p = cfg.partition
    if ds.name == "synthetic":
        raise ValueError("synthetic data has no index partition: each client generates its own")
    if p.kind == "file":
        return read_split(p.path, cfg.num_clients, len(ds.y_train), ds.name)[0]
    return partition(
        ds.y_train.numpy(), p.kind, cfg.num_clients, cfg.seeds.partition, alpha=p.alpha,
        labels_per_client=p.labels_per_client, min_size=p.min_size, max_retries=p.max_retries,
    )  # fmt: skip


def client_data(
    cfg: ExperimentConfig, partition_id: int, device: torch.device | None = None
) -> tuple[Tensor, Tensor]:
    """Client ``partition_id``'s training tensors, on ``device`` (default: the CPU); on a
    GPU they are cut from the training set that :func:`device_data` moved there once."""
    if not 0 <= partition_id < cfg.num_clients:
        raise ValueError(f"partition-id {partition_id} outside [0, {cfg.num_clients})")
    if cfg.dataset.name == "synthetic":
        d = cfg.dataset  # its size from the cached sizes, not drawn again for every client
        n = partition_sizes(cfg)[partition_id]
        xs, ys = client_samples(partition_id, n, d.alpha, d.beta, cfg.seeds.partition)
        dev = device or torch.device("cpu")
        return torch.from_numpy(xs).view(-1, 1, 1, FEATURES).to(dev), torch.from_numpy(ys).to(dev)
    x, y, _, _ = device_data(cfg, device or torch.device("cpu"))
    idx = torch.from_numpy(partitions(cfg)[partition_id]).to(x.device)
    return x[idx], y[idx]


def new_model(cfg: ExperimentConfig) -> nn.Module:
    """The experiment's model, initialised from ``seeds.model_init``."""
    ds = experiment_data(cfg)
    seed_torch(cfg.seeds.model_init)
    return build_model(cfg.model.name, ds.input_shape, ds.num_classes, cfg.model.hidden)


@lru_cache(maxsize=2)
def client_model(cfg: ExperimentConfig, device: torch.device) -> nn.Module:
    """The model object every client round of this process trains (per config and device).

    A round overwrites all its parameters and buffers with the global state before it trains,
    so nothing of one client's round reaches the next; building and initialising a model for
    every client cost about 1 ms even for a logistic regression
    (``python -m experiments.bench clients``), more for deep models."""
    return new_model(cfg).to(device)  # initialised on the CPU: the same on every device
