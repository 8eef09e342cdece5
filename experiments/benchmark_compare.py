"""The Fashion-MNIST comparison benchmark (a script, not a test): tune, then compare.

    python -m experiments.benchmark_compare                 # the settings below
    python -m experiments.benchmark_compare --rounds 20 --tune-rounds 10 --seeds 0,1,2,3,4
    python -m experiments.benchmark_compare --options   # WSA's other knobs, on validation

1. Tune FedWSA's lambda and FedProx's mu on a validation split (10% of train, held out;
   the test split is never looked at), one seed, for each alpha.
2. Pick, per alpha, the value with the best final validation accuracy (by code, below).
3. Run FedAvg, FedProx(mu*) and FedWSA(lambda*) with several seeds, evaluated on test.
4. Write the report (table, figures, summary) and ``choice.json`` with what was chosen.

``--options`` instead sweeps FedWSA's other knobs one at a time from the default
(kl, mean fusion, no alignment, lambda 1), with the tuning setting, on validation:
distance w2 (its own lambda grid: W2 is in weight units, so lambda 1 is far weaker than
for KL), fusion mixture and global, align_global on.

Setting (NIID-Bench's, with fewer rounds and 1 local epoch to fit a laptop): 10 clients,
all sampled, NIID-Bench CNN, batch 64, SGD lr 0.01, momentum 0.9, weight decay 1e-5.
Runs that already finished are skipped, so an interrupted benchmark resumes.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from fedwsa.run.report import find_runs, group_runs, label_runs

COMMON = ["dataset=fmnist", "num_clients=10", "fraction_train=1.0", "epochs=1", "batch_size=64",
          "lr=0.01", "momentum=0.9", "weight_decay=1e-5"]  # fmt: skip


def sweep(out: Path, *overrides: str) -> None:
    cmd = [sys.executable, "-m", "experiments.run", "-m", *COMMON, f"hydra.sweep.dir={out}",
           "hydra.sweep.subdir=${hydra.job.override_dirname}", *overrides]  # fmt: skip
    print("$", " ".join(cmd[1:]), flush=True)
    subprocess.run(cmd, check=True)


def best(folder: Path, knob: str) -> dict[float, float]:
    """alpha -> value of ``strategy.<knob>`` with the best final validation accuracy."""
    runs, _ = find_runs([folder])
    label_runs(runs)
    choice: dict[float, tuple[float, float]] = {}
    for g in group_runs(runs):
        value = float(g.runs[0].config["strategy"][knob])
        acc = sum(r.accuracy[-1] for r in g.runs) / len(g.runs)
        if g.alpha not in choice or acc > choice[g.alpha][1]:
            choice[g.alpha] = (value, acc)
    return {a: v for a, (v, _) in choice.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("multirun/benchmark_fmnist"))
    p.add_argument("--alphas", default="0.1,0.5")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--tune-rounds", type=int, default=5)
    p.add_argument("--lambdas", default="1,10,100,1000")
    p.add_argument("--mus", default="0.001,0.01,0.1,1")
    p.add_argument("--options", action="store_true", help="sweep distance/fusion/align_global only")
    a = p.parse_args()
    if a.options:
        options(a)
        return
    tune = [f"num_rounds={a.tune_rounds}", "validation=0.1", "seed=0", f"partition.alpha={a.alphas}"]
    sweep(a.out / "tune_wsa", "strategy=fedwsa", f"strategy.wsa_lambda={a.lambdas}", *tune)
    sweep(a.out / "tune_prox", "strategy=fedprox", f"strategy.proximal_mu={a.mus}", *tune)
    lam, mu = best(a.out / "tune_wsa", "wsa_lambda"), best(a.out / "tune_prox", "proximal_mu")
    (a.out / "choice.json").write_text(json.dumps({"wsa_lambda": lam, "proximal_mu": mu}, indent=1))
    print(f"[fedwsa] chosen on validation: lambda {lam}, mu {mu}", flush=True)
    for alpha in map(float, a.alphas.split(",")):
        run = [f"num_rounds={a.rounds}", f"seed={a.seeds}", f"partition.alpha={alpha}"]
        sweep(a.out / "compare", "strategy=fedavg", *run)
        sweep(a.out / "compare", "strategy=fedprox", f"strategy.proximal_mu={mu[alpha]}", *run)
        sweep(a.out / "compare", "strategy=fedwsa", f"strategy.wsa_lambda={lam[alpha]}", *run)
    subprocess.run([sys.executable, "-m", "experiments.report", str(a.out / "compare")], check=True)
    for name in ("tune_wsa", "tune_prox"):
        subprocess.run([sys.executable, "-m", "experiments.report", str(a.out / name)], check=True)


def options(a: argparse.Namespace) -> None:
    out = a.out / "tune_wsa_options"
    tune = [f"num_rounds={a.tune_rounds}", "validation=0.1", "seed=0", f"partition.alpha={a.alphas}",
            "strategy=fedwsa", "client_cpus=2"]  # fmt: skip
    sweep(out, *tune, "strategy.wsa_lambda=1", "strategy.distance=kl")
    sweep(out, *tune, "strategy.distance=w2", "strategy.wsa_lambda=1,100,10000")
    sweep(out, *tune, "strategy.wsa_lambda=1", "strategy.fusion=mixture,global")
    sweep(out, *tune, "strategy.wsa_lambda=1", "strategy.align_global=true")
    subprocess.run([sys.executable, "-m", "experiments.report", str(out)], check=True)


if __name__ == "__main__":
    main()
