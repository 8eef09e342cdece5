"""A simulation on Flower's Simulation Engine: a private SuperLink (``--simulation``) on a free
port, Ray started by Flower with this job's share of the machine (or a Ray cluster joined),
the run submitted, followed and checked."""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path

from experiments.launch.processes import free_port, process_group
from experiments.launch.resources import allocation, check_client_cpus, check_ray_address, federation
from experiments.launch.submit import check_finished, submit, write_run_config
from experiments.launch.superlink import flower_env, start_superlink, write_connection
from fedwsa.run.config import ExperimentConfig


def simulate(cfg: ExperimentConfig) -> None:
    """Run ``cfg`` on Flower's Simulation Engine; results land in ``cfg.out_dir``.

    ``ray_address`` empty: Flower starts Ray on this machine; else the simulation joins
    that Ray cluster (Ray's own ``RAY_ADDRESS``, read by the simulation process that the
    SuperLink starts), and its clients run on every node of it."""
    out = Path(cfg.out_dir)
    if cfg.ray_address:
        check_ray_address(cfg.ray_address)
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
