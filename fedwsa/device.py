"""Where a process trains and evaluates: ``device`` (``auto``, ``cpu``, ``cuda``, ``cuda:N``),
``precision`` (``fp32`` or ``bf16`` autocast) and ``deterministic`` kernels.

Every process (launcher, ServerApp, each ClientApp) resolves ``device`` itself, so ``auto``
means "a GPU where this process has one".
"""

from __future__ import annotations

import os
import re
from contextlib import AbstractContextManager, nullcontext

import torch

DEVICE_PATTERN = re.compile(r"auto|cpu|cuda|cuda:\d+")
PRECISIONS: tuple[str, ...] = ("fp32", "bf16")


class DeviceUnavailable(ValueError):
    """The device asked for is not on this machine; ``str()`` is one line."""


def resolve_device(name: str) -> torch.device:
    """``auto``: the current CUDA device when CUDA is available, else the CPU."""
    if not DEVICE_PATTERN.fullmatch(name):
        raise DeviceUnavailable(f"unknown device {name!r}; expected auto, cpu, cuda or cuda:N")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceUnavailable(f"{name}: CUDA is not available on this machine (use device=cpu or auto)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DeviceUnavailable(f"{name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return device


def autocast(device: torch.device, precision: str) -> AbstractContextManager[object]:
    """Forward passes in bf16 (``precision="bf16"``) or as they are (``fp32``); parameters,
    gradients and everything computed outside stay fp32."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return nullcontext()


def set_deterministic(on: bool) -> None:
    """cuDNN and every torch op deterministic (``torch.use_deterministic_algorithms``), or
    torch's defaults. cuBLAS needs ``CUBLAS_WORKSPACE_CONFIG`` before its first use.

    Nothing is called when nothing changes: ``use_deterministic_algorithms`` imports
    ``torch._inductor`` on its first call (3.3 s on the development machine)."""
    if on == torch.are_deterministic_algorithms_enabled():
        return
    if on:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.backends.cudnn.deterministic = on
    torch.backends.cudnn.benchmark = False
    torch.use_deterministic_algorithms(on)


def seed_torch(seed: int) -> None:
    """``torch.manual_seed(seed)``, less what a process that has not started CUDA does not need.

    ``torch.manual_seed`` also queues the seed for CUDA, XPU and MTIA until they start, and
    each queued call records a traceback: 0.11 ms a call on the development machine, paid
    twice per client round (``docs/PERFORMANCE.md`` section 8). Until CUDA has started in this process only
    the CPU generator can be drawn from, so only it is seeded; a client on a GPU seeds after
    its data is on the device, when CUDA has started, and gets ``torch.manual_seed``."""
    if torch.cuda.is_initialized():
        torch.manual_seed(seed)
    else:
        torch.default_generator.manual_seed(seed)


def peak_memory_mb(device: torch.device) -> float:
    """The most memory torch held on ``device`` since the last reset (0 on the CPU)."""
    if device.type != "cuda":
        return 0.0
    return torch.cuda.max_memory_allocated(device) / 2**20


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def release(device: torch.device) -> None:
    """Return cached blocks nothing uses any more to the GPU (between rounds)."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
