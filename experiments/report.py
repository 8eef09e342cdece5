"""Tables, figures and a summary from finished runs.

    python -m experiments.report multirun/compare/fmnist
    python -m experiments.report outputs/2026-11-26 --target 0.8 --out report/

Finds every finished run under the given folders, refuses to mix runs whose non-swept
settings differ, and writes results.md, results.csv, accuracy.png, scopes_alpha<a>.png,
sigma_growth_alpha<a>.png and summary.md (default: <first folder>/report).
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

from experiments.plots import plot_accuracy, plot_final, plot_growth, plot_scopes
from experiments.study.rules import holm, paired
from experiments.summary import (
    Group,
    ReportError,
    check_comparable,
    find_runs,
    group_runs,
    label_runs,
    summary,
)
from fedwsa.run.results import RunFolder


def _pm(mean: float, std: float, n: int) -> str:
    return f"{100 * mean:.2f} ± {100 * std:.2f}" if n > 1 else f"{100 * mean:.2f}"


def paired_table(groups: list[Group], reference: str) -> str | None:
    """Each strategy against ``reference`` at each alpha, seed by seed (the same seed: the same
    partition, initialisation and sampling): the mean difference of the final accuracy with its
    t-based 95 % interval, and Holm's adjustment over every comparison in the table."""
    if not any(g.label == reference for g in groups):
        return None
    finals = {(g.label, g.alpha): {r.config["seed"]: r.accuracy[-1] for r in g.runs} for g in groups}
    tests = {}
    for (label, alpha), by_seed in finals.items():
        ref = finals.get((reference, alpha))
        if label != reference and ref is not None and len(set(by_seed) & set(ref)) >= 2:
            tests[(label, alpha)] = paired(by_seed, ref)
    adjusted = holm({f"{k[0]}@{k[1]}": t.p for k, t in tests.items()})
    head = f"| strategy | alpha | seeds | minus {reference}, final (pp) | 95 % interval (pp) | p | p, Holm |"
    lines = [head, "|---|---|---|---|---|---|---|"]
    for (label, alpha), t in sorted(tests.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        ci = f"[{100 * t.low:+.2f}, {100 * t.high:+.2f}]"
        held = adjusted[f"{label}@{alpha}"]
        lines.append(
            f"| {label} | {alpha:g} | {len(t.seeds)} | {100 * t.mean:+.2f} | {ci} | {t.p:.3g} | {held:.3g} |"
        )
    note = (
        f"\nper seed, the strategy's final accuracy minus {reference}'s on the same seed; mean, t-based "
        f"95 % interval (n - 1 degrees of freedom), two-sided p, Holm over the {len(tests)} comparisons.\n"
    )
    return "\n".join(lines) + "\n" + note


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.report", description=__doc__.splitlines()[0])
    p.add_argument("paths", nargs="+", type=Path, help="sweep or run directories")
    p.add_argument("--out", type=Path, help="where to write (default: <first path>/report)")
    p.add_argument("--target", type=float, help="accuracy for 'rounds to target' (default: 90%% of the best)")
    what = "also compare every strategy with this one seed by seed (t 95%% interval, Holm): paired.md"
    p.add_argument("--paired", metavar="LABEL", help=what)
    a = p.parse_args(argv)
    try:
        runs, unfinished = find_runs(a.paths)
        check_comparable(runs)
    except ReportError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for d in unfinished:
        doc = RunFolder(d).metrics()
        how = str(doc.get("status", "absent"))
        if how == "interrupted":
            how += f" ({doc.get('signal')} after round {doc.get('last_round')})"
        print(f"[fedwsa] skipping an unfinished run, {how}: {d}", file=sys.stderr)
    label_runs(runs)
    groups = group_runs(runs)
    target = a.target or 0.9 * max(max(r.accuracy) for r in runs)
    stats = [g.stats(target) for g in groups]
    on = runs[0].evaluated_on
    out = a.out or a.paths[0] / "report"
    out.mkdir(parents=True, exist_ok=True)
    head = (f"| strategy | alpha | seeds | final {on} acc (%) | best {on} acc (%) | rounds to "
            f"{100 * target:.1f}% | strategy time (s) |")  # fmt: skip
    lines = [head, "|---|---|---|---|---|---|---|"]
    for s in stats:
        r2t = (
            "never"
            if s["rounds_to_target"] is None
            else f"{s['rounds_to_target']:.1f} ({s['reached']}/{s['seeds']})"
        )
        final = _pm(s["final_mean"], s["final_std"], s["seeds"])
        best = _pm(s["best_mean"], s["best_std"], s["seeds"])
        cells = [s["strategy"], f"{s['alpha']:g}", str(s["seeds"]), final, best, r2t, f"{s['wall_s']:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    note = ("\nmean ± sample std over seeds; rounds to target averaged over the seeds that reached it "
            f"(reached/seeds); accuracy on the {on} split; {len(runs)} runs.\n")  # fmt: skip
    (out / "results.md").write_text("\n".join(lines) + "\n" + note)
    with (out / "results.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(stats[0]))
        w.writeheader()
        w.writerows(stats)
    plot_accuracy(groups, out / "accuracy.png", on)
    plot_final(groups, out / "final.png", on)
    for alpha in sorted({g.alpha for g in groups}):
        plot_scopes(groups, out / f"scopes_alpha{alpha:g}.png", alpha)
        plot_growth(groups, out / f"sigma_growth_alpha{alpha:g}.png", alpha)
    if a.paired:
        table = paired_table(groups, a.paired)
        if table is None:
            print(f"error: --paired {a.paired}: no such strategy label (labels: "
                  f"{', '.join(sorted({g.label for g in groups}))})", file=sys.stderr)  # fmt: skip
            return 2
        (out / "paired.md").write_text(table)
        print(table)
    text = summary(stats, "final")
    (out / "summary.md").write_text("Final-round accuracy:\n\n" + "\n".join(f"- {t}" for t in text) + "\n")
    print("\n".join(lines) + "\n" + note + "\n".join(text))
    print(f"[fedwsa] report written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
