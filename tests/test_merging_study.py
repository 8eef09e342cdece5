"""Merging studies (``kind: merging`` presets, ``experiments/study/merging.py``): the measures
and the paired comparisons by hand, and a tiny study end to end (run, report, export, restore)."""

from __future__ import annotations

import json

import pytest

from experiments.study.cli import main
from experiments.study.four import MAIN, best
from experiments.study.four import main as four
from experiments.study.merging import at, collect, comparisons, jobs, matched, values
from experiments.study.preset import cells, load_preset


def _res(ends, mid, barrier=0.05, fused=None, lam=1.0, target="init", normalize="per_weight"):
    path = [{"a": 0.0, "loss": 1.0, "accuracy": ends[0]}, {"a": 0.5, "loss": 1.2, "accuracy": mid},
            {"a": 1.0, "loss": 1.0, "accuracy": ends[1]}]  # fmt: skip
    variant = {"diverged": [], "path": path, "barrier_accuracy": barrier, "barrier_loss": 0.1,
               "stages": [{"accuracy": [mid if fused is None else fused]}]}  # fmt: skip
    return {"plain": variant, "wsa": variant, "prox": variant,
            "config": {"wsa": {"lambda": lam, "target": target, "normalize": normalize}, "prox_mu": 0.1,
                       "wd": 0.0, "baselines": ["prox"]}}  # fmt: skip


def test_the_measures_by_hand():
    v = values(_res((0.80, 0.90), 0.70, barrier=0.15, fused=0.72), "wsa")
    assert v == pytest.approx({"endpoint": 0.85, "merged": 0.70, "barrier": 0.15, "fused": 0.72})
    diverged = _res((0.8, 0.9), 0.7)
    diverged["wsa"] = {**diverged["wsa"], "diverged": [1]}
    assert values(diverged, "wsa") is None


TINY = """
kind: merging
title: tiny
common: [dataset=digits, model=mlp, epochs=1, grid_points=3, 'baselines=[prox]', lr=0.05]
axes:
  init: {same: [same_init=true]}
final: {seeds: [0, 1, 2]}
analysis: {compare: [[wsa, prox], [wsa, plain]], alpha: 0.05}
strategies:
  weak: {overrides: [wsa.lambda=0.01, prox_mu=0.01]}
  strong: {overrides: [wsa.lambda=1, wsa.normalize=per_weight, prox_mu=0.1]}
"""


def test_paired_comparisons_by_hand(tmp_path):
    """WSA's merged accuracy 0.80, 0.82, 0.84 against prox's 0.78, 0.81, 0.80 over seeds 0-2:
    differences 0.02, 0.01, 0.04, mean 0.02333, sample sd 0.015275, se 0.008819, t(0.975, 2) =
    4.3027: interval 0.02333 -+ 0.03795 = [-0.01461, 0.06128], t = 2.6458, p = 0.1181; against
    plain (0.70 each seed) the mean is 0.12 with sd 0.02: t = 10.392, p = 0.009133. Holm over
    the two: 0.009133 x 2 = 0.01827 (helps), then max(0.01827, 0.1181) = 0.1181."""
    preset = tmp_path / "tiny.yaml"
    preset.write_text(TINY)
    cfg = load_preset(str(preset), [])
    (cell,) = cells(cfg, [])
    for seed, (w, p) in enumerate([(0.80, 0.78), (0.82, 0.81), (0.84, 0.80)]):
        res = _res((0.85, 0.85), 0.0)
        for variant, mid in (("wsa", w), ("prox", p), ("plain", 0.70)):
            res[variant] = _res((0.85, 0.85), mid)["wsa"]
        d = tmp_path / "out" / "merge" / cell.name / "strong" / f"seed={seed}"
        d.mkdir(parents=True)
        (d / "results.json").write_text(json.dumps(res))
    table = collect(cfg, tmp_path / "out", cell)
    assert table["strong"]["wsa"]["label"] == "wsa (per_weight, init)"
    rows = {(r["challenger"], r["reference"]): r for r in comparisons(cfg, {cell.name: table})}
    vs_prox, vs_plain = rows[("wsa", "prox")], rows[("wsa", "plain")]
    assert vs_prox["mean"] == pytest.approx(0.023333, abs=1e-6)
    assert (vs_prox["low"], vs_prox["high"]) == pytest.approx((-0.01461, 0.06128), abs=1e-5)
    assert vs_prox["p"] == pytest.approx(0.1181, abs=1e-4)
    assert vs_plain["adjusted_p"] == pytest.approx(0.01827, abs=1e-4) and vs_plain["verdict"] == "helps"
    assert vs_prox["adjusted_p"] == pytest.approx(0.1181, abs=1e-4)
    assert vs_prox["verdict"] == "no difference shown"
    assert "weak" not in table  # no run of it ended: nothing compared


def test_a_tiny_merging_study_runs_reports_and_restores(tmp_path, capsys):
    preset = tmp_path / "tiny.yaml"
    preset.write_text(TINY.replace("seeds: [0, 1, 2]", "seeds: [0, 1]"))
    out = tmp_path / "study"
    assert main([str(preset), "--out", str(out)]) == 0
    report = (out / "report" / "merging.md").read_text()
    assert "| init=same | strong | wsa (per_weight, init) | 1 | 2 |" in report
    assert "## Paired comparisons (merged accuracy" in report and (out / "report" / "tradeoff.png").is_file()
    data = json.loads((out / "report" / "merging.json").read_text())["cells"]["init=same"]
    # plain trains from the same starts and batches in every setting: the same numbers
    assert data["weak"]["plain"]["by_seed"] == data["strong"]["plain"]["by_seed"]
    assert data["weak"]["prox"]["by_seed"] != data["strong"]["prox"]["by_seed"]
    kept = tmp_path / "kept"
    assert main([str(preset), "--out", str(out), "--export", str(kept)]) == 0
    cfg = load_preset(str(preset), [])
    assert all((kept / j.out_dir.relative_to(out) / "results.json").is_file()
               for js in jobs(cfg, out, cells(cfg, [])[0]).values() for j in js)  # fmt: skip
    again = tmp_path / "again"
    capsys.readouterr()
    assert main([str(preset), "--out", str(again), "--restore", str(kept)]) == 0
    assert "[study] run " not in capsys.readouterr().out  # every run restored: none trained again
    assert (again / "report" / "merging.md").read_text() == report


def test_a_bad_setting_fails_before_any_run(tmp_path, capsys):
    preset = tmp_path / "bad.yaml"
    preset.write_text(TINY.replace("wsa.normalize=per_weight", "wsa.normalize=each"))
    assert main([str(preset), "--out", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "wsa.normalize: must be one of none, per_weight" in err[0]
    assert not (tmp_path / "s" / "merge").exists()


def test_a_preset_that_is_not_yaml_is_one_line(tmp_path, capsys):
    preset = tmp_path / "broken.yaml"
    preset.write_text("common: [a=[b]]\n")  # found writing this study's test: it was a traceback
    assert main([str(preset)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {preset}: while parsing")


def test_reading_a_curve_at_an_endpoint_level_by_hand():
    curve = [(0.85, 0.70), (0.83, 0.78), (0.80, 0.79)]  # plain, then stronger and stronger
    assert at(curve, 0.83) == pytest.approx(0.78)
    assert at(curve, 0.84) == pytest.approx(0.74)  # halfway from (0.83, 0.78) to (0.85, 0.70)
    assert at(curve, 0.815) == pytest.approx(0.785)
    assert at(curve, 0.86) is None and at(curve, 0.79) is None  # outside: not extrapolated


def test_matched_endpoint_comparison_by_hand(tmp_path):
    """Per seed, plain's endpoint 0.85 (merged 0.70); WSA's one strength: endpoint 0.81, merged
    0.80 + seed/100; prox's: endpoint 0.83, merged 0.74. At 0.85 - 0.02 = 0.83: WSA's curve
    reads 0.70 + (0.80 + s/100 - 0.70) * 0.02 / 0.04 = 0.75, 0.755, 0.76; prox's 0.74: differences
    0.010, 0.015, 0.020, mean 0.015, sd 0.005, se 0.0028868, t(0.975, 2) 4.3027: [0.00258,
    0.02742]; t = 5.196, p = 0.03510 (one comparison: adjusted the same): helps."""
    preset = tmp_path / "tiny.yaml"
    preset.write_text(TINY + "  # matched\n")
    pair = 'analysis.matched.compare=[["wsa (per_weight, init)", prox]]'
    cfg = load_preset(str(preset), ["analysis.matched.drop=0.02", pair])
    (cell,) = cells(cfg, [])
    for seed in range(3):
        res = _res((0.85, 0.85), 0.70)
        res["wsa"] = _res((0.81, 0.81), 0.80 + seed / 100)["wsa"]
        res["prox"] = _res((0.83, 0.83), 0.74)["wsa"]
        d = tmp_path / "out" / "merge" / cell.name / "strong" / f"seed={seed}"
        d.mkdir(parents=True)
        (d / "results.json").write_text(json.dumps(res))
    (row,) = matched(cfg, {cell.name: collect(cfg, tmp_path / "out", cell)})
    assert row["seeds"] == 3 and row["mean"] == pytest.approx(0.015)
    assert (row["low"], row["high"]) == pytest.approx((0.00258, 0.02742), abs=1e-5)
    assert row["p"] == pytest.approx(0.03510, abs=1e-4) and row["verdict"] == "helps"
    # a level below every point of prox's curve: not reached, not compared
    lower = load_preset(str(preset), ["analysis.matched.drop=0.03", pair])
    (row,) = matched(lower, {cell.name: collect(cfg, tmp_path / "out", cell)})
    assert row["seeds"] == 0 and row["verdict"].startswith("not compared")


def test_phase_two_picks_each_methods_best_setting_by_the_plans_rule(tmp_path):
    """plain: endpoint 0.85. WSA at 1, 5, 20: endpoints 0.84, 0.83, 0.80 with merged 0.75,
    0.78, 0.82: at drop 0.02 the level is 0.83, so 20 is out and 5 (0.78) wins. prox at 0.01 and
    0.1: endpoints 0.80 and 0.70: neither reaches 0.83, so the weakest, 0.01."""

    def entry(label, strength, end, merged):
        seed = {"endpoint": end, "merged": merged, "barrier": 0, "fused": merged}
        return {"label": label, "strength": strength, "diverged": [], "by_seed": {"0": seed}}

    table = {
        "weak": {"plain": entry("plain", 0, 0.85, 0.70), "wsa": entry(MAIN, 1, 0.84, 0.75),
                 "prox": entry("prox", 0.01, 0.80, 0.79)},
        "middle": {"plain": entry("plain", 0, 0.85, 0.70), "wsa": entry(MAIN, 5, 0.83, 0.78),
                   "prox": entry("prox", 0.1, 0.70, 0.70)},
        "strong": {"plain": entry("plain", 0, 0.85, 0.70), "wsa": entry(MAIN, 20, 0.80, 0.82)},
    }  # fmt: skip
    assert best(table, 0.02) == {MAIN: 5, "prox": 0.01}


def test_phase_two_presets_run(tmp_path):
    preset = tmp_path / "tiny.yaml"
    preset.write_text(
        TINY.replace("seeds: [0, 1, 2]", "seeds: [0, 1]") + "  none: {overrides: [wsa.lambda=1]}\n"
    )
    out = tmp_path / "study"
    assert main([str(preset), "--out", str(out)]) == 0
    assert four([str(preset), "--out", str(out), "--into", str(tmp_path)]) == 0
    (made,) = tmp_path.glob("tiny_four_*.yaml")
    assert main([str(made), "--out", str(tmp_path / "four")]) == 0
    report = (tmp_path / "four" / "report" / "merging.md").read_text()
    assert "| cell=init=same | main | wsa (per_weight, init) |" in report
    res = json.loads(next((tmp_path / "four").rglob("results.json")).read_text())
    assert res["config"]["num_models"] == 4 and len(res["plain"]["stages"]) == 2  # pairwise: 4 -> 2 -> 1
