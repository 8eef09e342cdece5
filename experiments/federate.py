"""Run the same experiment as a real federation (Flower Deployment Engine).

    python -m experiments.federate num_clients=4 num_rounds=3 strategy=fedwsa dataset=digits
    python -m experiments.federate federation.tls=true
    python -m experiments.federate federation.superlink=server.example:9093 federation.certs=/path/certs

Same config groups and overrides as ``experiments.run``. Locally it starts one SuperLink
and one SuperNode per client on 127.0.0.1 (free ports), and stops them all at the end.
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from experiments.launch.deployment import federate
from experiments.launch.preflight import execute, fail, preflight_dirs, preflight_groups


@hydra.main(config_path="conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    if cfg.attack.kind != "none":  # before anything is written or started
        fail("attack: attackers are simulated (experiments.run, in a simulation or engine=inprocess); "
             "a real federation's clients are real: leave attack=none", 2)  # fmt: skip
    fed = cfg.federation
    where = f"SuperLink {fed.superlink}" if fed.superlink else "loopback SuperLink + one SuperNode per client"
    execute(cfg, federate, f"{where}, {'TLS' if fed.tls or fed.certs else 'insecure'}")


if __name__ == "__main__":
    preflight_groups(sys.argv[1:])
    preflight_dirs(sys.argv[1:])
    main()
