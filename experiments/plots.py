"""Figures (matplotlib, Agg backend): sized for a paper column, readable when printed."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.ticker import MaxNLocator

from experiments.study.rules import sigma_ratio
from strategies import registry

plt.rcParams.update({"font.size": 9, "axes.titlesize": 9, "legend.fontsize": 8, "figure.dpi": 150})
VARIANT_STYLE = {
    "plain": ("tab:gray", "without WSA"), "wsa": ("tab:red", "with WSA"),
    "prox": ("tab:green", "L2 pull to the start"), "wd": ("tab:blue", "weight decay"),
}  # fmt: skip


def plot_connect(res: dict[str, Any], path: Path, title: str = "") -> None:
    """Test loss and accuracy along theta(a) = (1-a) theta_A + a theta_B, with and without WSA."""
    many = sum(v in res for v in VARIANT_STYLE) > 2  # legends under the panels, off the curves
    fig, axes = plt.subplots(1, 2, figsize=(6.4, 3.4 if many else 2.6), constrained_layout=True)
    for variant, (color, label) in VARIANT_STYLE.items():
        if variant not in res:
            continue
        rows = res[variant]["path"]
        a = [r["a"] for r in rows]
        b = res[variant]
        axes[0].plot(a, [r["loss"] for r in rows], color=color, marker="o", ms=2.5,
                     label=f"{label} (barrier {b['barrier_loss']:.3f})")  # fmt: skip
        axes[1].plot(a, [100 * r["accuracy"] for r in rows], color=color, marker="o", ms=2.5,
                     label=f"{label} (dip {100 * b['barrier_accuracy']:.1f} pp)")  # fmt: skip
    axes[0].set_ylabel("test loss (cross-entropy)")
    axes[1].set_ylabel("test accuracy (%)")
    for ax in axes:
        ax.set_xlabel("a  (0: model A, 1: model B)")
        ax.grid(alpha=0.3)
        if many:
            ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.22), fontsize=7, frameon=False)
        else:
            ax.legend()
    fig.suptitle(f"{title}: linear path (1 - a) A + a B" if title else "linear path (1 - a) A + a B")
    fig.savefig(path)
    plt.close(fig)


def _band(
    ax: Any, x: list[int], series: list[list[float]], color: str, label: str, scale: float = 1.0
) -> None:
    """Mean line with a +- std band over seeds (sample std)."""
    a = scale * np.array(series, dtype=float)
    mean = a.mean(0)
    std = a.std(0, ddof=1) if len(a) > 1 else np.zeros_like(mean)
    ax.plot(x, mean, color=color, label=label, lw=1.4)
    ax.fill_between(x, mean - std, mean + std, color=color, alpha=0.2, lw=0)


def _colors(labels: list[str]) -> dict[str, str]:
    """Each algorithm's own colour (``strategies.registry``: blue FedAvg, green FedProx, red
    FedWSA, ...); distinct colours where one algorithm has several labels in the same panel
    (a tuning sweep)."""
    names = [lab.split(",")[0] for lab in labels]
    used = {registry.color(n) for n in names}
    extra = iter([c for c in ("tab:brown", "tab:pink", "tab:olive", "tab:cyan", "tab:gray", "gold", "navy",
                              "lime", "indigo", "salmon") if c not in used])  # fmt: skip
    return {
        lab: registry.color(n) if names.count(n) == 1 else next(extra, "black")
        for lab, n in zip(labels, names, strict=True)
    }


def plot_accuracy(groups: list[Any], path: Path, evaluated_on: str = "test") -> None:
    """Accuracy vs round: one panel per alpha, one line per strategy, band = +- std over seeds."""
    alphas = sorted({g.alpha for g in groups})
    most = max(len({g.label for g in groups if g.alpha == a}) for a in alphas)
    below = most > 5  # many lines: one legend under the panels instead of one over each
    ncol = 3 if len(alphas) > 1 else 2
    height = 2.7 + (0.2 * math.ceil(most / ncol) + 0.2 if below else 0)
    fig, axes = plt.subplots(1, len(alphas), figsize=(3.2 * max(len(alphas), 2 if below else 1), height),
                             sharey=True, constrained_layout=True, squeeze=False)  # fmt: skip
    for ax, alpha in zip(axes[0], alphas, strict=True):
        colors = _colors(sorted({g.label for g in groups if g.alpha == alpha}))
        for g in (g for g in groups if g.alpha == alpha):
            rounds = [int(r["round"]) for r in g.runs[0].rows]
            _band(
                ax, rounds, [r.accuracy for r in g.runs], colors[g.label], f"{g.label} (n={len(g.runs)})", 100
            )
        ax.set_title(f"Dirichlet alpha = {alpha:g}")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("round")
        ax.grid(alpha=0.3)
        if not below:
            ax.legend(loc="lower right")
    axes[0][0].set_ylabel(f"central {evaluated_on} accuracy (%)")
    if below:
        by_label: dict[str, Any] = {}
        for ax in axes[0]:
            for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
                by_label.setdefault(lab.rsplit(" (n=", 1)[0], h)
        fig.legend(list(by_label.values()), list(by_label), loc="outside lower center", ncol=ncol, fontsize=7,
                   frameon=False)  # fmt: skip
    fig.savefig(path)
    plt.close(fig)


def plot_final(groups: list[Any], path: Path, evaluated_on: str = "test") -> None:
    """Final accuracy per strategy label (rows, best first at the first alpha), mean and std
    over seeds, one marker per alpha: readable with many strategies, where lines are not."""
    alphas = sorted({g.alpha for g in groups})
    first = {g.label: np.mean([r.accuracy[-1] for r in g.runs]) for g in groups if g.alpha == alphas[0]}
    labels = sorted({g.label for g in groups}, key=lambda lab: -first.get(lab, -1.0))
    fig, ax = plt.subplots(figsize=(5.2, 0.9 + 0.22 * len(labels)), constrained_layout=True)
    markers = iter(["o", "s", "^", "D", "v"])
    for k, alpha in enumerate(alphas):
        m = next(markers, "o")
        for g in (g for g in groups if g.alpha == alpha):
            finals = 100 * np.array([r.accuracy[-1] for r in g.runs])
            y = labels.index(g.label) + (k - (len(alphas) - 1) / 2) * 0.22
            std = finals.std(ddof=1) if len(finals) > 1 else 0.0
            ax.errorbar(finals.mean(), y, xerr=std, fmt=m, ms=3.5, capsize=2, lw=0.8,
                        color=f"C{k}", label=f"Dirichlet alpha = {alpha:g}")  # fmt: skip
    ax.set_yticks(range(len(labels)), [f"{lab} (n={len(next(g.runs for g in groups if g.label == lab))})"
                                        for lab in labels], fontsize=7)  # fmt: skip
    ax.invert_yaxis()
    ax.set_xlabel(f"final {evaluated_on} accuracy (%)")
    ax.grid(axis="x", alpha=0.3)
    handles, names = ax.get_legend_handles_labels()
    unique = dict(zip(names, handles, strict=True))
    ax.legend(unique.values(), unique.keys(), loc="upper left", fontsize=7, title="mean ± std over seeds",
              title_fontsize=7)  # fmt: skip
    fig.savefig(path)
    plt.close(fig)


def _cv(record: dict[str, Any], layer: int) -> float:
    """Client sigma spread of one round and layer, in %; NaN for a round without replies."""
    if "client_sigma_std" not in record:
        return float("nan")
    return 100 * record["client_sigma_std"][layer] / record["client_sigma_mean"][layer]


def plot_scopes(groups: list[Any], path: Path, alpha: float) -> None:
    """Per layer: the global model's sigma (top) and the spread of client sigmas (bottom).

    Bottom row: std over clients of each client's sigma after local training, divided by
    their mean (coefficient of variation, %): how far apart the clients' scopes drifted.
    FedWSA's target sigma is dashed in the top row.
    """
    gs = [g for g in groups if g.alpha == alpha and g.runs[0].scopes]
    if not gs:
        return
    layers = gs[0].runs[0].scopes["layers"]
    colors = _colors(sorted({g.label for g in gs}))
    fig, axes = plt.subplots(2, len(layers), figsize=(2.3 * len(layers) + 0.6, 4.6), squeeze=False,
                             layout="constrained")  # fmt: skip
    for g in gs:
        rec = [r.scopes["rounds"] for r in g.runs]
        rounds = [int(x["round"]) for x in rec[0]]
        for j in range(len(layers)):
            glob = [[x["global"][j][1] for x in rr] for rr in rec]
            _band(axes[0][j], rounds, glob, colors[g.label], g.label)
            if rec[0][1].get("target"):
                tgt = np.array([[x["target"][j][1] for x in rr[1:]] for rr in rec])  # round 0 has none
                axes[0][j].plot(rounds[1:], tgt.mean(0), color=colors[g.label], ls="--", lw=1,
                                label=f"{g.label} target")  # fmt: skip
            cv = [[_cv(x, j) for x in rr[1:]] for rr in rec]
            _band(axes[1][j], rounds[1:], cv, colors[g.label], g.label)
    for j, name in enumerate(layers):
        axes[0][j].set_title(name, fontsize=8)
        axes[1][j].set_xlabel("round")
        for i in (0, 1):
            axes[i][j].grid(alpha=0.3)
    for ax in axes.flat:  # a diverged run would flatten every other line
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        lo, hi = ax.dataLim.y0, ax.dataLim.y1
        if np.isfinite([lo, hi]).all() and lo > 0 and hi > 50 * lo:
            ax.set_yscale("log")
    axes[0][0].set_ylabel("global model sigma")
    axes[1][0].set_ylabel("client sigma spread (CV, %)")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=min(4, len(labels)), fontsize=7)
    fig.suptitle(f"Weight scope per layer, Dirichlet alpha = {alpha:g} (mean +- std over seeds)")
    fig.savefig(path)
    plt.close(fig)


def growth(runs: list[Any], layer: int) -> list[list[float]]:
    """Per run, the global model's sigma of one layer in each round over round 0's (the
    study's sigma-growth table reads the last round of the same ratio)."""
    return [sigma_ratio(r.scopes, layer) for r in runs]


def plot_growth(groups: list[Any], path: Path, alpha: float) -> None:
    """Per layer, the global model's sigma over its round-0 value, round by round: one line per
    strategy (mean over seeds; no bands, so that many strategies stay readable). A strategy
    whose label names a moving target is dashed, in the colour of its fused twin, so that a
    grid over two target rules reads as pairs. Panels three to a row: a paper's page width."""
    gs = sorted((g for g in groups if g.alpha == alpha and g.runs[0].scopes), key=lambda g: g.label)
    if not gs:
        return
    layers = gs[0].runs[0].scopes["layers"]
    cols = min(3, len(layers))
    rows_ = math.ceil(len(layers) / cols)
    fig, axes = plt.subplots(rows_, cols, figsize=(7.0, 2.1 * rows_ + 0.25 * math.ceil(len(gs) / 2) + 0.5),
                             squeeze=False, layout="constrained")  # fmt: skip

    def twin(label: str) -> str:  # the same strategy with the fused (default) target
        return label.replace("target_rule=moving", "target_rule=fused")

    colors = _colors(list(dict.fromkeys(twin(g.label) for g in gs)))
    for g in gs:
        rounds = [int(x["round"]) for x in g.runs[0].scopes["rounds"]]
        for j, ax in enumerate(axes.flat[: len(layers)]):
            mean = np.nanmean(np.array(growth(g.runs, j)), axis=0)
            ax.plot(rounds, mean, color=colors[twin(g.label)], ls="--" if "moving" in g.label else "-",
                    lw=1.3, label=f"{g.label} ({len(g.runs)} seeds)")  # fmt: skip
    for j, ax in enumerate(axes.flat):
        if j >= len(layers):
            ax.axis("off")
            continue
        ax.set_title(layers[j], fontsize=8)
        ax.axhline(1.0, color="gray", lw=0.6)
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if j >= len(layers) - cols:
            ax.set_xlabel("round")
        if j % cols == 0:
            ax.set_ylabel("sigma / round 0's")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=2, fontsize=7, frameon=False)
    fig.suptitle(f"Global model's weight spread per layer over its initial value (alpha = {alpha:g}, "
                 "mean over seeds)")  # fmt: skip
    fig.savefig(path)
    plt.close(fig)


def plot_mechanism(points: list[dict[str, Any]], path: Path, baseline: str = "fedavg") -> None:
    """WSA's gain over the baseline (pp, mean over seeds, bars: +- one standard error of the
    difference) against the baseline's scope mismatch: left the clients' sigma spread, right
    sigma's drop on averaging; one point per cell and challenger, numbered by cell (key below)."""
    fig, axes = plt.subplots(1, 2, figsize=(6.4, 3.3), sharey=True, constrained_layout=True)
    names = sorted({p["challenger"] for p in points})

    def cell_of(x: dict[str, Any]) -> str:
        return " ".join(f"{v}" for v in x["cell"].values())

    number = {c: i + 1 for i, c in enumerate(dict.fromkeys(cell_of(x) for x in points))}
    axes_names = " ".join(points[0]["cell"])
    colors = dict(zip(names, ["tab:red", "tab:orange", "tab:brown", "tab:pink"], strict=False))
    markers = dict(zip(names, ["o", "s", "^", "D"], strict=False))
    for ax, what, xlabel in (
        (axes[0], "spread", f"{baseline}: client sigma spread, std / mean (%)"),
        (axes[1], "drop", f"{baseline}: sigma drop on averaging (%)"),
    ):
        xs = [100 * x[what] for x in points]
        dodge = 0.02 * ((max(xs) - min(xs)) or 1.0)  # challengers side by side at one cell
        for i, n in enumerate(names):
            p = [x for x in points if x["challenger"] == n]
            shift = (i - (len(names) - 1) / 2) * dodge
            ax.errorbar([100 * x[what] + shift for x in p], [100 * x["gain"] for x in p],
                        yerr=[100 * x.get("gain_se", 0.0) for x in p], fmt=markers.get(n, "o"), ms=4,
                        color=colors.get(n, "black"), capsize=2, lw=0.8, label=n)  # fmt: skip
        first: dict[Any, dict[str, Any]] = {}  # each cell labelled once, also where one challenger is missing
        for x in sorted(points, key=lambda x: names.index(x["challenger"])):
            first.setdefault(cell_of(x), x)
        labelled = sorted(first.values(), key=lambda x: x[what])
        for k, x in enumerate(labelled):  # each cell by its number; neighbours above and below
            ax.annotate(str(number[cell_of(x)]), (100 * x[what], 100 * x["gain"]), fontsize=6.5,
                        xytext=(4, 3 if k % 2 else -9), textcoords="offset points",
                        color="dimgray")  # fmt: skip
        ax.axhline(0, color="gray", lw=0.8)
        ax.margins(x=0.25)
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(f"final accuracy gain over {baseline} (pp)")
    axes[0].legend(loc="best")
    key = [f"{i}: {c}" for c, i in number.items()]
    rows = ["    ".join(key[k : k + 4]) for k in range(0, len(key), 4)]
    fig.supxlabel(f"cells ({axes_names})\n" + "\n".join(rows), fontsize=6.5, color="dimgray")
    fig.savefig(path)
    plt.close(fig)


def plot_tradeoff(
    tables: dict[str, dict[str, dict[str, dict[str, Any]]]], path: Path, title: str = ""
) -> None:
    """Merged (midpoint) accuracy against the endpoints' accuracy, one panel per cell, one curve
    per method over its strengths (means over seeds; ``experiments.study.merging``)."""
    n = len(tables)
    cols = min(n, 2)
    rows_ = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows_, cols, figsize=(3.4 * cols, 2.9 * rows_ + 0.6), squeeze=False,
                             constrained_layout=True)  # fmt: skip
    styles = {v: c for v, (c, _) in VARIANT_STYLE.items() if v != "wsa"}
    wsa_colors = iter(["tab:red", "darkviolet", "tab:brown", "tab:pink"])
    shown: dict[str, str] = {}
    for ax, (cell, table) in zip(axes.flat, tables.items(), strict=False):
        curves: dict[str, list[tuple[float, float, float]]] = {}
        for variants in table.values():
            for e in variants.values():
                vs = list(e["by_seed"].values())
                if vs:
                    point = (e["strength"], float(np.mean([v["endpoint"] for v in vs])),
                             float(np.mean([v["merged"] for v in vs])))  # fmt: skip
                    curves.setdefault(e["label"], []).append(point)
        for lab, pts in sorted(curves.items()):
            if lab not in shown:
                shown[lab] = styles.get(lab) or next(wsa_colors, "black")
            pts = sorted(set(pts))
            plain = lab == "plain"  # one point (no strength), drawn on top of the curves
            ax.plot([100 * p[1] for p in pts], [100 * p[2] for p in pts], color=shown[lab],
                    marker="s" if plain else "o", ms=5 if plain else 3, lw=1.2, label=lab,
                    zorder=3 if plain else 2)  # fmt: skip
        ax.set_title(cell, fontsize=8)
        ax.set_xlabel("endpoint accuracy (%, mean of A and B)")
        ax.set_ylabel("merged accuracy (%, midpoint)")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    handles = [plt.Line2D([], [], color=c, marker="s" if lab == "plain" else "o", ms=4, label=lab)
               for lab, c in shown.items()]  # fmt: skip
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 4), fontsize=7,
               frameon=False)  # fmt: skip
    fig.suptitle(f"{title}: merged vs endpoint accuracy (each point a strength)" if title else
                 "merged vs endpoint accuracy (each point a strength)", fontsize=9)  # fmt: skip
    fig.savefig(path, dpi=150, bbox_inches="tight")
    plt.close(fig)
