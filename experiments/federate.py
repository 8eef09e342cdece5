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

from experiments.common import already_finished, preflight_groups, prepare, report_errors, resolve
from experiments.launch import federate


@hydra.main(config_path="conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    with report_errors():
        exp = resolve(cfg)
        if already_finished(exp):
            print(f"[fedwsa] {exp.out_dir} already holds this finished run: skipped", flush=True)
            return
        prepare(exp)
        where = exp.federation.superlink or "127.0.0.1 (SuperLink + one SuperNode per client)"
        tls = "TLS" if exp.federation.tls or exp.federation.certs else "insecure"
        print(f"[fedwsa] federation of {exp.num_clients} clients at {where}, {tls}, "
              f"{exp.strategy.name} on {exp.dataset.name} -> {exp.out_dir}", flush=True)  # fmt: skip
        federate(exp)
        print(f"[fedwsa] results written to {exp.out_dir}", flush=True)


if __name__ == "__main__":
    preflight_groups(sys.argv[1:])
    main()
