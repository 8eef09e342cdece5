"""Figures (matplotlib, Agg backend): sized for a paper column, readable when printed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

plt.rcParams.update({"font.size": 9, "axes.titlesize": 9, "legend.fontsize": 8, "figure.dpi": 150})
VARIANT_STYLE = {"plain": ("tab:gray", "without WSA"), "wsa": ("tab:red", "with WSA")}


def plot_connect(res: dict[str, Any], path: Path, title: str = "") -> None:
    """Test loss and accuracy along theta(a) = (1-a) theta_A + a theta_B, with and without WSA."""
    fig, axes = plt.subplots(1, 2, figsize=(6.4, 2.6), constrained_layout=True)
    for variant, (color, label) in VARIANT_STYLE.items():
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
        ax.legend()
    fig.suptitle(f"{title}: linear path (1 - a) A + a B" if title else "linear path (1 - a) A + a B")
    fig.savefig(path)
    plt.close(fig)
