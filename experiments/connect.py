"""Mode connectivity with and without WSA: interpolation path, barrier, multi-stage fusion.

    python -m experiments.connect dataset=fmnist num_models=2 wsa.lambda=0.1 seed=0
    python -m experiments.connect -m dataset=fmnist seed=0,1,2
    python -m experiments.connect num_models=4 stages=pairwise subsets=halves

Writes path.csv, results.json and connect.png in the Hydra output directory.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from experiments.launch.preflight import fail, report_errors
from experiments.launch.processes import LaunchError
from experiments.plots import plot_connect
from fedwsa.connectivity import BASELINES, ConnectSettings, run_connect
from fedwsa.data import Dataset, load_dataset
from fedwsa.models import build_model
from fedwsa.run.config import ConfigError
from fedwsa.run.results import atomic_write
from fedwsa.wsa import model_stable_lambda, scoped_names

CHOICES = {
    "subsets": ("full", "halves", "dirichlet"),
    "target": ("init", "fused"),
    "fusion": ("mean", "mixture"),
    "stages": ("all", "pairwise"),
    "distance": ("kl", "w2"),
    "normalize": ("none", "per_weight"),
}


def settings(cfg: DictConfig) -> ConnectSettings:
    """Flatten and check the Hydra config; a bad value raises ConfigError naming the key."""
    c = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(c, dict)
    w = c["wsa"]
    s = ConnectSettings(
        model=c["model"]["name"],
        hidden=int(c["model"]["hidden"]),
        seed=c["seed"],
        num_models=c["num_models"],
        same_init=c["same_init"],
        subsets=c["subsets"],
        alpha=float(c["partition"]["alpha"]),
        epochs=c["epochs"],
        batch_size=c["batch_size"],
        lr=float(c["lr"]),
        momentum=float(c["momentum"]),
        weight_decay=float(c["weight_decay"]),
        wsa_lambda=float(w["lambda"]),
        distance=w["distance"],
        normalize=w.get("normalize", "none"),
        target=w["target"],
        fusion=w["fusion"],
        grid_points=c["grid_points"],
        stages=c["stages"],
        stage_epochs=c["stage_epochs"],
        align=c["align"],
        baselines=tuple(c["baselines"]),
        prox_mu=float(c["prox_mu"]),
        wd=float(c["wd"]),
        stop_at=float(c["stop_at"]),
    )
    for b in s.baselines:
        if b not in BASELINES:
            raise ConfigError("baselines", f"each must be one of {', '.join(BASELINES)}; got {b!r}")
    for key, allowed in CHOICES.items():
        value = getattr(s, key)
        if value not in allowed:
            name = f"wsa.{key}" if key in ("target", "fusion", "distance", "normalize") else key
            raise ConfigError(name, f"must be one of {', '.join(allowed)}; got {value!r}")
    for key, ok in (
        ("num_models", s.num_models >= 2),
        ("grid_points", s.grid_points >= 2),
        ("epochs", s.epochs >= 1),
        ("wsa.lambda", s.wsa_lambda > 0),
        ("lr", s.lr > 0),
        ("batch_size", s.batch_size >= 1),
        ("stage_epochs", s.stage_epochs >= 0),
        ("prox_mu", s.prox_mu >= 0),
        ("wd", s.wd >= 0),
        ("stop_at", 0 <= s.stop_at < 1),
    ):
        if not ok:
            raise ConfigError(key, f"out of range: {OmegaConf.select(cfg, key)}")
    return s


def warn_unstable(s: ConnectSettings, ds: Dataset) -> None:
    """One line when ``wsa.lambda`` is past the WSA term's stable range for SGD at the initial
    target (``fedwsa.wsa.stable_lambda``), as ``experiments.run`` warns."""
    model = build_model(s.model, ds.input_shape, ds.num_classes, s.hidden)
    bound, worst = model_stable_lambda(model, scoped_names(model), s.distance, s.normalize, s.lr, s.momentum)
    if s.wsa_lambda >= bound:
        print(f"[fedwsa] warning: wsa.lambda={s.wsa_lambda:g} is beyond the stable range of the WSA term "
              f"for SGD at lr={s.lr:g}, momentum={s.momentum:g} (lambda < {bound:.3g} at the initial "
              f"target; most curved: {worst}): expect the WSA models to diverge",
              flush=True)  # fmt: skip


@hydra.main(config_path="conf", config_name="connect", version_base="1.3")
def main(cfg: DictConfig) -> None:
    with report_errors():
        connect(cfg)


def connect(cfg: DictConfig) -> dict[str, Any]:
    """Run the composed ``cfg`` (``conf/connect.yaml``): train, walk, fuse, write the results
    (``python -m experiments.study`` calls it for each run of a merging study). Raises
    ``ConfigError`` or ``LaunchError`` (a diverged model: results.json is written first)."""
    s = settings(cfg)
    out = Path(cfg.out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    root = str(Path(cfg.dataset.root).expanduser().resolve())
    ds = load_dataset(cfg.dataset.name, root, cfg.dataset.download)
    print(f"[fedwsa] {s.num_models} models on {ds.name}, plain vs WSA (lambda={s.wsa_lambda}) -> {out}")
    warn_unstable(s, ds)
    res = run_connect(s, ds)
    res["config"] = OmegaConf.to_container(cfg, resolve=True)
    atomic_write(out / "results.json", json.dumps(res, indent=1))
    variants = ["plain", "wsa", *s.baselines]
    bad = {v: res[v]["diverged"] for v in variants if res[v]["diverged"]}
    if bad:  # its barriers are not computed: say so, keep what was written, exit 1
        what = "; ".join(f"{v}: model(s) {', '.join(map(str, ks))}" for v, ks in bad.items())
        raise LaunchError(
            f"training diverged (non-finite weights or loss) for {what}; no barrier or fusion "
            f"is computed for them (results.json says so, in {out}); lower wsa.lambda or lr"
        )
    lines = ["a," + ",".join(f"loss_{v},accuracy_{v}" for v in variants)]
    for i, p in enumerate(res["plain"]["path"]):
        points = [res[v]["path"][i] for v in variants]
        lines.append(f"{p['a']}," + ",".join(f"{q['loss']},{q['accuracy']}" for q in points))
    (out / "path.csv").write_text("\n".join(lines) + "\n")
    plot_connect(res, out / "connect.png", title=f"{ds.name}, seed {s.seed}")
    for v in variants:
        r = res[v]
        fused = r["stages"][-1]["accuracy"][0]
        print(
            f"[fedwsa] {v:5s}: loss barrier {r['barrier_loss']:.4f}, accuracy barrier "
            f"{r['barrier_accuracy']:.4f}, fused accuracy {fused:.4f}"
        )
    print(f"[fedwsa] results written to {out}")
    return res


if __name__ == "__main__":
    if any(a.startswith("wsa.lam=") for a in sys.argv[1:]):
        fail("wsa.lam: unknown key; the key is wsa.lambda", 2)
    main()
