"""Write the client split any config would use, in NIID-Bench's format, so others can replay it.

    python -m experiments.split dataset=fmnist num_clients=100 partition.alpha=0.1 seed=3 --out split.json

Then ``python -m experiments.run partition=file partition.path=split.json ...`` (with the
same dataset, ``num_clients`` and ``validation``) trains on exactly that split.
"""

from __future__ import annotations

import sys
from pathlib import Path

from hydra import compose, initialize_config_dir

from experiments.launch.preflight import CONF_DIR, fail, preflight_groups, report_errors, resolve
from fedwsa.run.factory import experiment_data, partitions
from fedwsa.run.splits import write_split

USAGE = "usage: python -m experiments.split [overrides ...] --out split.json"


def main(argv: list[str]) -> None:
    if "--out" not in argv or argv.index("--out") == len(argv) - 1:
        fail(f"--out is required; {USAGE}", 2)
    i = argv.index("--out")
    out, overrides = Path(argv[i + 1]), argv[:i] + argv[i + 2 :]
    preflight_groups(overrides)
    with report_errors():
        with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
            exp = resolve(compose("config", [*overrides, "out_dir=unused"]))
        parts = partitions(exp)
        write_split(out, parts, exp.dataset.name, len(experiment_data(exp).y_train))
        sizes = [len(p) for p in parts]
        print(f"wrote the {exp.partition.kind} split of {exp.dataset.name} for {len(parts)} clients "
              f"({min(sizes)}-{max(sizes)} samples each) to {out}")  # fmt: skip


if __name__ == "__main__":
    main(sys.argv[1:])
