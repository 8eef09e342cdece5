"""Datasets as in-memory tensors, loaded once per process.

``digits`` ships inside scikit-learn (the embedded default). ``fmnist`` is read from
Debian's ``dataset-fashion-mnist`` files when present, else from a torchvision root,
else downloaded by torchvision. ``mnist``, ``cifar10`` and ``cifar100`` come from a
torchvision root or a download. Offline and missing, a :class:`DatasetUnavailable`
says where to put the files.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

DATASETS: tuple[str, ...] = ("digits", "fmnist", "mnist", "cifar10", "cifar100", "synthetic")
DEBIAN_FMNIST = Path("/usr/share/datasets/fashion-mnist")

# Per-channel normalisation constants (train-split statistics, the usual published ones).
_NORM = {
    "fmnist": ((0.2860,), (0.3530,)),
    "mnist": ((0.1307,), (0.3081,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}
_TORCHVISION = {"fmnist": "FashionMNIST", "mnist": "MNIST", "cifar10": "CIFAR10", "cifar100": "CIFAR100"}
_FOLDER = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}  # else the class name
_NUM_CLASSES = {"digits": 10, "fmnist": 10, "mnist": 10, "cifar10": 10, "cifar100": 100}


class DatasetUnavailable(RuntimeError):
    """The dataset's files are missing or unreadable; the message says what to do."""


@dataclass(frozen=True)
class Dataset:
    """Train and test splits; images ``(N, C, H, W)`` float32, labels int64."""

    name: str
    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    num_classes: int
    source: str

    @property
    def input_shape(self) -> tuple[int, int, int]:
        c, h, w = self.x_train.shape[1:]
        return int(c), int(h), int(w)


def read_idx(path: Path) -> np.ndarray:
    """Read an idx file (optionally gzipped): magic ``0 0 0x08 ndim``, big-endian dims, uint8."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise DatasetUnavailable(f"cannot read {path}: {e}") from e
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DatasetUnavailable(f"{path} is not an idx file of unsigned bytes")
    ndim = raw[3]
    header = 4 + 4 * ndim
    dims = tuple(int(d) for d in np.frombuffer(raw[4:header], dtype=">i4"))
    if len(raw) - header != int(np.prod(dims)):
        raise DatasetUnavailable(
            f"{path} is truncated or corrupted: header says {dims}, "
            f"file holds {len(raw) - header} bytes of data"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims).copy()


def _images(x: np.ndarray | Tensor, name: str) -> Tensor:
    """uint8 images (N,H,W) or (N,H,W,C) -> normalised float32 (N,C,H,W)."""
    t = torch.as_tensor(np.asarray(x), dtype=torch.float32) / 255.0
    t = t.unsqueeze(1) if t.ndim == 3 else t.permute(0, 3, 1, 2)
    mean, std = (torch.tensor(v).view(1, -1, 1, 1) for v in _NORM[name])
    return ((t - mean) / std).contiguous()


def _labels(y: Any) -> Tensor:
    return torch.as_tensor(np.asarray(y), dtype=torch.int64)


def _digits() -> Dataset:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[:, None, :, :]
    x_tr, x_te, y_tr, y_te = train_test_split(x, d.target, test_size=0.2, random_state=0, stratify=d.target)
    return Dataset(
        "digits", torch.from_numpy(x_tr), _labels(y_tr), torch.from_numpy(x_te), _labels(y_te),
        10, "scikit-learn load_digits (embedded), fixed stratified 80/20 split (seed 0)",
    )  # fmt: skip


def _debian_fmnist(folder: Path) -> Dataset:
    def split(prefix: str) -> tuple[Tensor, Tensor]:
        x = read_idx(folder / f"{prefix}-images-idx3-ubyte.gz")
        y = read_idx(folder / f"{prefix}-labels-idx1-ubyte.gz")
        if x.shape[0] != y.shape[0]:
            raise DatasetUnavailable(f"{folder}: {x.shape[0]} {prefix} images but {y.shape[0]} labels")
        return _images(x, "fmnist"), _labels(y)

    x_tr, y_tr = split("train")
    x_te, y_te = split("t10k")
    return Dataset("fmnist", x_tr, y_tr, x_te, y_te, 10, f"Debian dataset-fashion-mnist ({folder})")


def _torchvision(name: str, root: Path, download: bool) -> Dataset:
    from torchvision import datasets

    cls = getattr(datasets, _TORCHVISION[name])
    try:
        tr = cls(str(root), train=True, download=download)
        te = cls(str(root), train=False, download=download)
    except Exception as e:
        where = root / _FOLDER.get(name, cls.__name__)
        hint = " (or `apt-get install dataset-fashion-mnist`)" if name == "fmnist" else ""
        detail = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        if where.is_dir() and any(where.rglob("*")):  # there, but unreadable
            raise DatasetUnavailable(
                f"dataset {name!r}: the files under {where} do not read ({detail}); they may be "
                f"truncated or corrupted: delete them and copy or download them again{hint}"
            ) from e
        then = (
            "the download failed (no internet?)" if download
            else "dataset.download=false; set it to true on a machine with internet access"
        )  # fmt: skip
        raise DatasetUnavailable(
            f"dataset {name!r}: torchvision's {cls.__name__} files are not under {where} and {then} "
            f"({detail}). Copy the files there{hint}, or set dataset.root."
        ) from e
    return Dataset(
        name, _images(tr.data, name), _labels(tr.targets), _images(te.data, name),
        _labels(te.targets), _NUM_CLASSES[name], f"torchvision {cls.__name__} ({root})",
    )  # fmt: skip


@lru_cache(maxsize=2)
def load_dataset(name: str, root: str = "data", download: bool = True) -> Dataset:
    """Load a dataset once per process (cached): see the module docstring for sources."""
    if name == "digits":
        ds = _digits()
    elif name == "fmnist" and (DEBIAN_FMNIST / "train-images-idx3-ubyte.gz").exists():
        ds = _debian_fmnist(DEBIAN_FMNIST)
    elif name in _TORCHVISION:
        ds = _torchvision(name, Path(root).expanduser(), download)
    else:
        raise ValueError(f"unknown dataset {name!r}; expected one of {', '.join(DATASETS)}")
    return check_labels(ds)


def check_labels(ds: Dataset) -> Dataset:
    """``ds``, or :class:`DatasetUnavailable` when its labels do not fit ``num_classes``."""
    for split, y in (("train", ds.y_train), ("test", ds.y_test)):
        if y.numel() and (int(y.min()) < 0 or int(y.max()) >= ds.num_classes):
            raise DatasetUnavailable(
                f"dataset {ds.name!r}: {split} labels span [{int(y.min())}, {int(y.max())}], "
                f"outside [0, {ds.num_classes - 1}] for its {ds.num_classes} classes"
            )
    return ds


def holdout(ds: Dataset, fraction: float, seed: int) -> Dataset:
    """Hold out a stratified ``fraction`` of the training split as the evaluation split.

    The returned dataset trains on the rest and its "test" tensors are the held-out part,
    so hyperparameters can be chosen without ever looking at the real test split.
    """
    rng = np.random.default_rng(seed)
    y = ds.y_train.numpy()
    val = np.concatenate(
        [
            rng.permutation(np.flatnonzero(y == c))[: round(fraction * int(np.sum(y == c)))]
            for c in np.unique(y)
        ]
    )
    keep = np.setdiff1d(np.arange(len(y)), val)
    val_t, keep_t = torch.from_numpy(np.sort(val)), torch.from_numpy(keep)
    return Dataset(
        ds.name, ds.x_train[keep_t], ds.y_train[keep_t], ds.x_train[val_t], ds.y_train[val_t],
        ds.num_classes, f"{ds.source}; {fraction:.0%} of train held out as validation (seed {seed})",
    )  # fmt: skip
