"""Run one simulation (or a Hydra multirun sweep) from the Hydra config.

python -m experiments.run strategy=fedprox dataset=fmnist partition.alpha=0.1 seed=3
python -m experiments.run -m strategy=fedavg,fedprox,fedwsa seed=0,1,2
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from experiments.launch.flower import simulate
from experiments.launch.inprocess import run_inprocess
from experiments.launch.preflight import execute, preflight_dirs, preflight_groups


@hydra.main(config_path="conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    if cfg.engine == "inprocess":
        execute(cfg, run_inprocess, "in this process (engine=inprocess)")
    else:
        execute(cfg, simulate, "Flower Simulation Engine")


if __name__ == "__main__":
    preflight_groups(sys.argv[1:])
    preflight_dirs(sys.argv[1:])
    main()
