"""Run one simulation (or a Hydra multirun sweep) from the Hydra config.

python -m experiments.run strategy=fedprox dataset=fmnist partition.alpha=0.1 seed=3
python -m experiments.run -m strategy=fedavg,fedprox,fedwsa seed=0,1,2
"""

from __future__ import annotations

import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from experiments.launch.inprocess import run_inprocess
from experiments.launch.preflight import execute, preflight_dirs, preflight_groups
from experiments.launch.simulation import simulate
from experiments.launch.sweep_session import SweepSession

# A multirun's simulations share one Ray, SuperLink and Flower run: the session of this
# process, started by its first job, stopped when the command ends (``__main__`` below).
SWEEP = SweepSession()


@hydra.main(config_path="conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    if cfg.engine == "inprocess":
        execute(cfg, run_inprocess, "in this process (engine=inprocess)")
    elif in_process_sweep():
        execute(cfg, SWEEP.simulate, "Flower Simulation Engine")
    else:
        execute(cfg, simulate, "Flower Simulation Engine")


def in_process_sweep() -> bool:
    """A job of a Hydra multirun whose jobs run one after the other in this process (the
    basic launcher; submitit's run each job in its own process, on its own allocation)."""
    hc = HydraConfig.get()
    return hc.mode == RunMode.MULTIRUN and "BasicLauncher" in str(hc.launcher.get("_target_", ""))


if __name__ == "__main__":
    preflight_groups(sys.argv[1:])
    preflight_dirs(sys.argv[1:])
    with SWEEP:  # stops what the sweep started, also on Ctrl-C or an error
        main()
