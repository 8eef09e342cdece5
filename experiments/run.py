"""Run one simulation (or a Hydra multirun sweep) from the Hydra config.

python -m experiments.run strategy=fedprox dataset=fmnist partition.alpha=0.1 seed=3
python -m experiments.run -m strategy=fedavg,fedprox,fedwsa seed=0,1,2
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from experiments.common import already_finished, preflight_groups, prepare, report_errors, resolve
from experiments.launch import simulate


@hydra.main(config_path="conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    with report_errors():
        exp = resolve(cfg)
        if already_finished(exp):
            print(f"[fedwsa] {exp.out_dir} already holds this finished run: skipped", flush=True)
            return
        prepare(exp)
        print(f"[fedwsa] {exp.strategy.name} on {exp.dataset.name}: {exp.num_clients} clients, "
              f"{exp.num_rounds} rounds -> {exp.out_dir}", flush=True)  # fmt: skip
        simulate(exp)
        print(f"[fedwsa] results written to {exp.out_dir}", flush=True)


if __name__ == "__main__":
    preflight_groups(sys.argv[1:])
    main()
