"""What a simulation asks Ray for: this job's CPUs and GPUs (SLURM, affinity, CUDA), each
client's share, and Flower's simulation settings from the config."""

from __future__ import annotations

import os
from typing import Any

from experiments.launch.processes import LaunchError, refused
from fedwsa.device import resolve_device
from fedwsa.run.config import ExperimentConfig

AUTO_CLIENT_GPUS = 0.25
"""``client_gpus=-1`` on a CUDA machine: four clients share a GPU (see the README)."""


def check_ray_address(address: str, timeout_s: float = 5.0) -> None:
    """Raise :class:`LaunchError` unless a Ray head answers at ``ray_address`` (``host:port``,
    or ``ray://host:port``): Flower's simulation otherwise evaluates round 0 and then waits,
    silently, for a cluster that is not there. ``auto`` is left to Ray (it reads the address
    of the cluster started on this machine)."""
    if address == "auto":
        return
    try:
        why = refused(address.removeprefix("ray://"), timeout_s)
    except ValueError:
        raise LaunchError(f"ray_address: expected auto or host:port, got {address!r}") from None
    if why:
        raise LaunchError(
            f"ray_address={address}: no Ray answers there ({why}); start the cluster "
            "(ray start --head) or fix the address"
        )


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


def check_client_cpus(cfg: ExperimentConfig, alloc: dict[str, Any]) -> None:
    if cfg.client_cpus > alloc["cpus"]:
        raise LaunchError(
            f"client_cpus={cfg.client_cpus} exceeds the {alloc['cpus']} CPUs this job may use "
            f"({alloc['cpus_from']}): no client could start; lower client_cpus"
        )


def federation(cfg: ExperimentConfig) -> str:
    """Flower's simulation settings for ``cfg`` (``flwr run --federation-config``)."""
    return (
        f"num-supernodes={cfg.node_pool} client-resources-num-cpus={cfg.client_cpus} "
        f"client-resources-num-gpus={float(client_gpus(cfg))}"
    )
