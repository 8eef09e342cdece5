"""experiments.study: the rules by hand (choice, decision, mismatch, rank correlation), and a
small study run end to end: choices from the tuning files, finals equal to experiments.run,
a second call runs nothing, a lost run is redone alone, a bad preset exits 2."""

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from experiments.study.archive import copy_ended
from experiments.study.cli import main as study_main
from experiments.study.preset import Job, cells, load_preset
from experiments.study.rules import (
    calibrated,
    choose,
    decide,
    diverged,
    holm,
    mismatch,
    paired,
    paired_verdict,
    spearman,
)
from experiments.study.runner import run_job, status
from experiments.study.scoring import cell_results, paired_decisions
from fedwsa.run import results
from tests.helpers import ROOT, metrics, placeless


def _rows(*accs, loss=0.5):
    return [{"round": i, "test_accuracy": a, "test_loss": loss} for i, a in enumerate(accs)]


def test_diverged_means_nonfinite_loss_or_chance_accuracy():
    assert diverged(_rows(0.1, 0.5, loss=float("nan")), 10)
    assert diverged(_rows(0.5, 0.105), 10)  # <= 1/10 + 1 pp
    assert not diverged(_rows(0.1, 0.111), 10)
    assert not diverged(_rows(0.5, 0.3), 10)
    assert diverged(_rows(0.9, 0.5), 2)  # two classes: chance is 50 %


def test_choose_highest_last_round_ties_to_smaller_diverged_last():
    cands = [
        (0.1, _rows(0.2, 0.70)),
        (1.0, _rows(0.2, 0.75)),
        (10.0, _rows(0.2, 0.75)),
        (100.0, _rows(0.8, 0.6)),
    ]
    assert choose(cands, 10) == 1.0  # 1 and 10 tie at 75 %: the smaller; 100's best round is not its last
    cands.append((1000.0, _rows(0.2, 0.9, loss=float("inf"))))  # higher accuracy, but diverged
    assert choose(cands, 10) == 1.0
    assert (
        choose([(1000.0, _rows(0.1, loss=float("nan"))), (5.0, _rows(0.1, 0.1))], 10) == 5.0
    )  # both diverged
    with pytest.raises(ValueError):
        choose([], 10)


def test_decide_by_two_pooled_sample_stds():
    # challenger mean 0.82, sd 0.02; reference 0.76, sd 0.01; s = sqrt((4e-4 + 1e-4) / 2) = 0.015811
    d = decide([0.80, 0.82, 0.84], [0.75, 0.76, 0.77])
    assert d.verdict == "helps"
    assert d.diff == pytest.approx(0.06)
    assert d.pooled_sd == pytest.approx(math.sqrt(2.5e-4))
    # difference 0.03 < 2 s = 0.0316: not shown; reversed roles: also not shown
    assert decide([0.79, 0.80, 0.81], [0.76, 0.77, 0.78]).verdict == "helps"  # 0.03 > 2 * 0.01
    assert decide([0.78, 0.80, 0.82], [0.76, 0.77, 0.78]).verdict == "no difference shown"
    assert decide([0.70, 0.71, 0.72], [0.76, 0.77, 0.78]).verdict == "hurts"


def test_mismatch_by_hand():
    scopes = {
        "layers": ["a", "b"],
        "rounds": [
            {"round": 0, "global": [[0, 0.1], [0, 0.2]], "target": None},
            {
                "round": 1,
                "global": [[0, 0.09], [0, 0.18]],
                "client_sigma_mean": [0.1, 0.2],
                "client_sigma_std": [0.01, 0.01],
            },
            {"round": 2, "global": [[0, 0.09], [0, 0.18]]},  # no replies: left out
            {
                "round": 3,
                "global": [[0, 0.1], [0, 0.2]],
                "client_sigma_mean": [0.1, 0.25],
                "client_sigma_std": [0.0, 0.05],
            },
        ],
    }
    m = mismatch(scopes)
    # spread: 0.1, 0.05, 0, 0.2 -> 0.0875; drop: 0.1, 0.1, 0, 1 - 0.2/0.25 = 0.2 -> 0.1
    assert m["spread"] == pytest.approx(0.0875)
    assert m["drop"] == pytest.approx(0.1)
    assert m["growth"] == pytest.approx([1.0, 1.0])  # round 3's sigma over round 0's, per layer
    scopes["rounds"][-1]["global"] = [[0, 0.15], [0, 0.1]]
    assert mismatch(scopes)["growth"] == pytest.approx([1.5, 0.5])


def test_spearman_by_hand():
    assert spearman([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(0.8)  # 1 - 6*2 / (4*15)
    assert spearman([1, 1, 2], [1, 2, 3]) == pytest.approx(1.5 / math.sqrt(3))  # tied ranks 1.5, 1.5
    assert spearman([3, 2, 1], [1, 2, 3]) == pytest.approx(-1.0)
    assert math.isnan(spearman([1, 2], [2, 1]))
    assert math.isnan(spearman([1, 1, 1], [1, 2, 3]))


TINY = """
title: tiny
common: [dataset=digits, num_clients=3, engine=inprocess, model=mlp, batch_size=64]
axes:
  alpha: {"0.5": [partition.alpha=0.5]}
tune: {rounds: 2, seed: 0, overrides: [validation=0.1]}
final: {rounds: 2, seeds: [0, 1]}
references: [fedavg]
challengers: [fedwsa]
strategies:
  fedavg: {overrides: [strategy=fedavg]}
  fedwsa:
    overrides: [strategy=fedwsa]
    tune: {key: strategy.wsa_lambda, values: [0.1, 1, 1000000]}
"""


def test_a_failed_final_counts_by_its_last_evaluated_accuracy(tmp_path):
    """Finals written by hand: fedavg's two seeds finish (0.60, 0.70), fedwsa's seed 0
    finishes (0.50) and seed 1 fails after round 2 at 0.10 (best 0.30): fedwsa's scores are
    0.50 and 0.10, mean 0.30, sample std sqrt(0.08) = 0.2828; fedavg: mean 0.65, std
    0.0707; pooled s = sqrt((0.08 + 0.005) / 2) = 0.2062; 0.30 - 0.65 = -0.35 < -2 s =
    -0.4123 is false: no difference shown."""
    preset = tmp_path / "tiny.yaml"
    preset.write_text(TINY)
    cfg = load_preset(str(preset), [])
    (cell,) = cells(cfg, [])
    out = tmp_path / "study"

    def write(tag, seed, st, accs):
        d = out / "final" / cell.name / tag / f"seed={seed}"
        d.mkdir(parents=True)
        (d / "metrics.json").write_text(json.dumps({"status": st, "rounds": _rows(*accs)}))

    write("fedavg", 0, "finished", (0.1, 0.5, 0.6))
    write("fedavg", 1, "finished", (0.1, 0.7, 0.7))
    write("fedwsa,wsa_lambda=1", 0, "finished", (0.1, 0.4, 0.5))
    write("fedwsa,wsa_lambda=1", 1, "failed", (0.1, 0.3, 0.1))
    res = cell_results(cfg, out, cell, {"fedwsa": 1.0})
    w = res["strategies"]["fedwsa"]
    assert (w["seeds"], w["failed"], w["final"], w["best"]) == (2, 1, [0.5, 0.1], [0.5, 0.3])
    # final.last=2: each final scored by its last two rounds: fedavg (0.5 + 0.6) / 2 = 0.55 and
    # (0.7 + 0.7) / 2 = 0.70; fedwsa 0.45 and (0.3 + 0.1) / 2 = 0.20
    two = load_preset(str(preset), ["final.last=2"])
    res2 = cell_results(two, out, cell, {"fedwsa": 1.0})
    assert res2["strategies"]["fedavg"]["final"] == pytest.approx([0.55, 0.70])
    assert res2["strategies"]["fedwsa"]["final"] == pytest.approx([0.45, 0.20])
    assert res2["strategies"]["fedwsa"]["best"] == [0.5, 0.3]  # the best round is not averaged
    d = res["decisions"]["fedwsa"]
    assert d["verdict"] == "no difference shown"
    assert d["diff"] == pytest.approx(-0.35) and d["pooled_sd"] == pytest.approx(math.sqrt(0.085 / 2))
    # a failed run that never evaluated a round does not count: no decision
    (out / "final" / cell.name / "fedwsa,wsa_lambda=1" / "seed=1" / "metrics.json").write_text(
        json.dumps({"status": "failed", "rounds": []})
    )
    res = cell_results(cfg, out, cell, {"fedwsa": 1.0})
    assert (res["strategies"]["fedwsa"]["seeds"], res["strategies"]["fedwsa"]["failed"]) == (1, 1)
    assert res["decisions"] == {}


@pytest.mark.slow  # end-to-end runs (in process)
def test_small_study_end_to_end(tmp_path, capsys):
    preset = tmp_path / "tiny.yaml"
    preset.write_text(TINY)
    out = tmp_path / "study"
    assert study_main([str(preset), "--out", str(out)]) == 0
    tune = out / "tune" / "alpha=0.5" / "fedwsa"
    cands = []
    for v in ("0.1", "1", "1e+06"):
        m = json.loads((tune / f"wsa_lambda={v}" / "metrics.json").read_text())
        failed = [] if m["status"] == "finished" else [{"test_accuracy": 0.0, "test_loss": float("nan")}]
        cands.append((float(v), m["rounds"] + failed))
        assert (
            json.loads((tune / f"wsa_lambda={v}" / "config.json").read_text())["evaluated_on"] == "validation"
        )
    lam = choose(cands, 10)
    assert lam != 1e6  # lambda 1e6 diverges
    assert json.loads((out / "choice.json").read_text()) == {"alpha=0.5": {"fedwsa": lam}}
    final = out / "final" / "alpha=0.5" / f"fedwsa,wsa_lambda={lam:g}" / "seed=1"
    assert json.loads((final / "config.json").read_text())["evaluated_on"] == "test"
    # a final run equals the same run made by experiments.run
    ref = tmp_path / "ref"
    cmd = [sys.executable, "-m", "experiments.run", f"hydra.run.dir={ref}", "dataset=digits", "num_clients=3",
           "engine=inprocess", "model=mlp", "batch_size=64", "partition.alpha=0.5", "strategy=fedwsa",
           "num_rounds=2", "seed=1", f"strategy.wsa_lambda={lam:g}"]  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert placeless(metrics(final)[0]) == placeless(metrics(ref)[0])
    report = (out / "report" / "study.md").read_text()
    study = json.loads((out / "report" / "study.json").read_text())
    # the verdict the report prints is the rule's on the finals, recomputed here from the runs
    finals = {
        tag: [
            metrics(out / "final" / "alpha=0.5" / tag / f"seed={s}")[0][-1]["test_accuracy"] for s in (0, 1)
        ]
        for tag in ("fedavg", f"fedwsa,wsa_lambda={lam:g}")
    }
    d = decide(finals[f"fedwsa,wsa_lambda={lam:g}"], finals["fedavg"])
    assert "## Decisions" in report and f"| fedavg | {d.verdict} ({100 * d.diff:+.2f} pp" in report
    st = study[0]["strategies"]
    assert st["fedavg"]["seeds"] == 2 and st["fedwsa"]["value"] == lam
    fedavg_final = [
        metrics(out / "final" / "alpha=0.5" / "fedavg" / f"seed={s}")[0][-1]["test_accuracy"] for s in (0, 1)
    ]
    assert st["fedavg"]["final"] == fedavg_final
    capsys.readouterr()
    # run again: nothing runs; remove one final run: only it runs again, with the same result
    before = metrics(final)[0]
    assert study_main([str(preset), "--out", str(out)]) == 0
    assert "[study] run " not in capsys.readouterr().out
    for f in final.iterdir():
        f.unlink() if f.is_file() else None
    assert study_main([str(preset), "--out", str(out)]) == 0
    ran = [line for line in capsys.readouterr().out.splitlines() if line.startswith("[study] run ")]
    assert ran == [f"[study] run {final}"]
    assert metrics(final)[0] == before
    # export the ended runs (no models, no checkpoints), restore them elsewhere: nothing runs again
    kept = tmp_path / "kept"
    assert study_main([str(preset), "--out", str(out), "--export", str(kept)]) == 0
    assert not list(kept.rglob("*.pt")) and not list(kept.rglob("checkpoints"))
    assert json.loads((kept / "choice.json").read_text()) == {"alpha=0.5": {"fedwsa": lam}}
    elsewhere = tmp_path / "elsewhere"
    assert study_main([str(preset), "--out", str(elsewhere), "--restore", str(kept)]) == 0
    assert "[study] run " not in capsys.readouterr().out
    assert json.loads((elsewhere / "report" / "study.json").read_text()) == study
    # an earlier report's cells join the report where this folder lacks them
    other = {**study[0], "cell": {"alpha": "0.1"}}
    (tmp_path / "old.json").write_text(json.dumps([other]))
    two = tmp_path / "two.yaml"
    axis = 'alpha: {"0.5": [partition.alpha=0.5]}'
    two.write_text(TINY.replace(axis, axis[:-1] + ', "0.1": [partition.alpha=0.1]}'))
    assert study_main([str(two), "--out", str(out), "--report", "--merge", str(tmp_path / "old.json")]) == 0
    merged = json.loads((out / "report" / "study.json").read_text())
    assert merged == [*study, other]
    assert "1 of these cells are taken as they were from" in (out / "report" / "study.md").read_text()


@pytest.mark.slow  # end-to-end runs (in process)
def test_runs_side_by_side_end_as_one_after_another(tmp_path, capfd):
    """--workers 2 runs the same runs in two processes (two cells: a cell's finals are queued
    when its tuning has ended): every run, choice and the report are those of the sequential
    study; a second call runs nothing."""
    two_cells = TINY.replace(
        'alpha: {"0.5": [partition.alpha=0.5]}',
        'alpha: {"0.5": [partition.alpha=0.5], "0.1": [partition.alpha=0.1]}',
    )
    two_cells = two_cells.replace("values: [0.1, 1, 1000000]", "values: [0.1, 1000000]").replace(
        "seeds: [0, 1]", "seeds: [0]")  # fmt: skip
    preset = tmp_path / "two.yaml"
    preset.write_text(two_cells)
    one, side = tmp_path / "one", tmp_path / "side"
    assert study_main([str(preset), "--out", str(one)]) == 0
    assert study_main([str(preset), "--out", str(side), "--workers", "2"]) == 0
    runs = sorted(m.parent.relative_to(one) for m in one.rglob("metrics.json"))
    assert len(runs) == 2 * (2 + 2)  # per cell: two tuning runs, two finals
    assert runs == sorted(m.parent.relative_to(side) for m in side.rglob("metrics.json"))
    for run in runs:
        assert metrics(one / run) == metrics(side / run), run
    assert json.loads((one / "choice.json").read_text()) == json.loads((side / "choice.json").read_text())
    assert (one / "report" / "study.json").read_text() == (side / "report" / "study.json").read_text()
    assert "[study] run " in capfd.readouterr().out  # the workers' output, on the inherited fds
    assert study_main([str(preset), "--out", str(side), "--workers", "2"]) == 0  # all ended: none runs
    assert "[study] run " not in capfd.readouterr().out


def test_simulation_runs_of_a_study_share_ray_and_the_superlink_as_a_sweep_s_jobs(tmp_path, monkeypatch):
    """Runs on Flower's engine go through the sweep's launcher (one Ray and one SuperLink for
    the whole study, tests/test_batch_cluster.py); in-process runs do not."""
    import experiments.launch.simulation as simulation
    from experiments.launch.sweep_session import SweepSession

    launched = []

    def fake(self, cfg):
        launched.append(cfg)
        (Path(cfg.out_dir) / "metrics.json").write_text(json.dumps({"status": "finished", "rounds": []}))

    monkeypatch.setattr(SweepSession, "simulate", fake)
    bypass = lambda cfg: pytest.fail("a study run bypassed the shared Ray")  # noqa: E731
    monkeypatch.setattr(simulation, "simulate", bypass)
    common = ["dataset=digits", "num_clients=3", "model=mlp", "num_rounds=1"]
    assert run_job(Job(tmp_path / "sim", (*common, "seed=0"))) == "finished"
    assert [c.engine for c in launched] == ["simulation"] and launched[0].sweep_ray
    assert run_job(Job(tmp_path / "inproc", (*common, "engine=inprocess"))) == "finished"
    assert len(launched) == 1


def preset_of(tmp_path, text):
    path = tmp_path / f"preset{abs(hash(text))}.yaml"
    path.write_text(text)
    return path


def test_bad_presets_exit_2_with_one_line(tmp_path, capsys):
    assert study_main(["no_such_preset"]) == 2
    assert "no study preset 'no_such_preset'" in capsys.readouterr().err
    assert study_main(["wsa_where", "--only", "model=resnet50"]) == 2
    assert "axis model has no value 'resnet50'" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text(TINY.replace("model=mlp", "modell=mlp"))
    with pytest.raises(SystemExit) as e:  # the same check and message as experiments.run
        study_main([str(bad), "--out", str(tmp_path / "o")])
    assert e.value.code == 2
    assert "modell: unknown key" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()  # checked before anything ran
    bad.write_text(TINY.replace("values: [0.1, 1, 1000000]", "values: []"))
    assert study_main([str(bad)]) == 2
    assert "non-empty list of values" in capsys.readouterr().err
    assert study_main([str(preset_of(tmp_path, TINY)), "--workers", "0"]) == 2
    assert "--workers 0: give 1 or more" in capsys.readouterr().err
    sim = preset_of(tmp_path, TINY.replace("engine=inprocess", "engine=simulation"))
    assert study_main([str(sim), "--out", str(tmp_path / "o"), "--workers", "2"]) == 2
    err = capsys.readouterr().err
    assert "has engine=simulation" in err and "use --workers 1 or engine=inprocess" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "o").exists()


def test_restoring_leaves_whole_copies_when_another_process_copies_too(tmp_path, monkeypatch):
    """Two studies restoring one folder at once (one process per cell): each run is copied
    aside and renamed into place, so the one that loses the race leaves the winner's whole
    copy and no half-made folder; an unfinished run there is replaced."""
    src, dest = tmp_path / "kept", tmp_path / "out"
    for name, state in (("a", "finished"), ("b", "failed"), ("c", "running")):
        (src / name).mkdir(parents=True)
        (src / name / "metrics.json").write_text(json.dumps({"status": state, "rounds": []}))
        (src / name / "model.pt").write_text("not kept")
    (dest / "b").mkdir(parents=True)  # an unfinished run is replaced
    (dest / "b" / "metrics.json").write_text(json.dumps({"status": "running"}))
    rename = Path.rename

    def other_process_first(self, target):  # the other restore renames its copy first
        if Path(target).name == "a":
            shutil.copytree(src / "a", target)
        return rename(self, target)

    monkeypatch.setattr(Path, "rename", other_process_first)
    assert copy_ended(src, dest) == 2
    assert sorted(p.name for p in dest.iterdir()) == ["a", "b"]  # no ".copy<pid>" left behind
    assert status(Job(dest / "a", ())) == "finished" and (dest / "a" / "model.pt").exists()
    assert status(Job(dest / "b", ())) == "failed" and not (dest / "b" / "model.pt").exists()


def test_two_processes_writing_one_file_each_rename_a_whole_file(tmp_path, monkeypatch):
    """Two studies restoring one folder both write its choice.json: while this process writes,
    another one (another pid) writes and renames the same file; each renames its own temp
    file (a shared ``choice.json.tmp`` was renamed away by the other: FileNotFoundError)."""
    path = tmp_path / "choice.json"
    real, pid = results.write_synced, os.getpid()

    def other_process_meanwhile(p, data):
        real(p, data)
        if os.getpid() == pid:
            monkeypatch.setattr(os, "getpid", lambda: pid + 1)
            results.atomic_write(path, '{"other": 1}')
            monkeypatch.setattr(os, "getpid", lambda: pid)

    monkeypatch.setattr(results, "write_synced", other_process_meanwhile)
    results.atomic_write(path, '{"mine": 1}')
    assert json.loads(path.read_text()) == {"mine": 1}  # the last rename wins, whole
    assert [p.name for p in tmp_path.iterdir()] == ["choice.json"]  # no temp file left


def test_tuning_ranks_by_the_mean_of_the_last_rounds_the_plan_names():
    noisy = [
        {"round": 0, "test_accuracy": 0.1, "test_loss": 1.0},
        *[
            {"round": i + 1, "test_accuracy": a, "test_loss": 1.0}
            for i, a in enumerate((0.60, 0.61, 0.60, 0.75))
        ],
    ]
    steady = [
        {"round": 0, "test_accuracy": 0.1, "test_loss": 1.0},
        *[
            {"round": i + 1, "test_accuracy": a, "test_loss": 1.0}
            for i, a in enumerate((0.70, 0.71, 0.72, 0.70))
        ],
    ]
    cands = [(1.0, noisy), (10.0, steady)]
    assert choose(cands, 10) == 1.0  # its last round: 0.75 > 0.70
    assert choose(cands, 10, last=3) == 10.0  # the last three: (0.61 + 0.60 + 0.75) / 3 = 0.653 < 0.710


def test_paired_interval_and_p_by_hand():
    # differences 0.05, 0.04, 0.07: mean 0.05333, sample sd 0.015275, se 0.0088192; t(0.975, 2) = 4.302653
    r = paired({0: 0.80, 1: 0.82, 2: 0.84}, {0: 0.75, 1: 0.78, 2: 0.77})
    assert r.diffs == pytest.approx([0.05, 0.04, 0.07]) and r.mean == pytest.approx(0.0533333, rel=1e-5)
    assert (r.low, r.high) == (pytest.approx(0.0533333 - 4.302653 * 0.0088192, rel=1e-4),
                               pytest.approx(0.0533333 + 4.302653 * 0.0088192, rel=1e-4))  # fmt: skip
    # two degrees of freedom: P(|T| > t) = 1 - t / sqrt(t^2 + 2), t = 0.053333 / 0.0088192 = 6.0474
    t = 0.0533333 / 0.0088192
    assert r.p == pytest.approx(1 - t / math.sqrt(t * t + 2), rel=1e-3)
    assert paired({0: 0.5, 1: 0.6}, {0: 0.4, 1: 0.5}).p == 0.0  # every difference 0.1: nothing varies
    with pytest.raises(ValueError):
        paired({0: 0.5}, {0: 0.4, 1: 0.3})


def test_pairing_finds_what_two_pooled_stds_cannot():
    """The reference's seeds differ a lot (0.70-0.90), the challenger is 0.01-0.03 above it on
    every seed: paired, t = 0.02 / (0.007071 / sqrt 5) = 6.32 on 4 df, p = 0.0032: helps; the
    unpaired rule needs 2 pooled stds, 0.16: no difference shown."""
    ref = {0: 0.70, 1: 0.80, 2: 0.90, 3: 0.75, 4: 0.85}
    ch = {s: v + d for (s, v), d in zip(ref.items(), (0.02, 0.03, 0.01, 0.02, 0.02), strict=True)}
    r = paired(ch, ref)
    assert r.p == pytest.approx(0.00321, abs=2e-4) and paired_verdict(r, r.p) == "helps"
    assert decide(list(ch.values()), list(ref.values())).verdict == "no difference shown"
    worse = paired(ref, ch)
    assert paired_verdict(worse, worse.p) == "hurts" and paired_verdict(worse, 0.2) == "no difference shown"


def test_holm_by_hand():
    # sorted 0.01, 0.03, 0.04 times 3, 2, 1: 0.03, 0.06, 0.04 -> made non-decreasing: 0.03, 0.06, 0.06
    assert holm({"a": 0.01, "b": 0.04, "c": 0.03}) == pytest.approx({"a": 0.03, "b": 0.06, "c": 0.06})
    # Holm rejects both here (0.04, 0.04), Bonferroni would not reject b (0.06); unadjusted would say
    # 0.02 and 0.03
    assert holm({"a": 0.02, "b": 0.03}) == pytest.approx({"a": 0.04, "b": 0.04})
    assert holm({"a": 0.6, "b": 0.7}) == {"a": 1.0, "b": 1.0}  # capped


def test_calibration_precondition():
    assert not calibrated([0.10, 0.12], 0.5) and calibrated([0.8, 0.7], 0.5) and not calibrated([], 0.0)


def test_paired_decisions_of_a_study_score_calibrated_cells_only(tmp_path):
    """Two cells by hand: in alpha=0.5 fedavg reaches 0.70-0.90 and fedwsa is 0.02 above it on
    every seed (p 0.0032 on 5 seeds); in alpha=0.1 fedavg is at chance (0.10), below the
    plan's calibration 0.5: "reference did not train", not scored. Holm over one comparison."""
    preset = tmp_path / "p.yaml"
    axis = 'alpha: {"0.5": [partition.alpha=0.5]}'
    two = TINY.replace(axis, axis[:-1] + ', "0.1": [partition.alpha=0.1]}')
    two = two.replace("seeds: [0, 1]", "seeds: [0, 1, 2, 3, 4]")
    preset.write_text(two + "analysis: {paired: true, reference: fedavg, calibration: 0.5}\n")
    cfg = load_preset(str(preset), [])
    out = tmp_path / "study"
    ref = [0.70, 0.80, 0.90, 0.75, 0.85]
    gain = [0.02, 0.03, 0.01, 0.02, 0.02]
    results = []
    for cell in cells(cfg, []):
        good = cell.name == "alpha=0.5"
        for seed in range(5):
            for tag, acc in (("fedavg", ref[seed] if good else 0.10),
                             ("fedwsa,wsa_lambda=1", ref[seed] + gain[seed] if good else 0.11)):  # fmt: skip
                d = out / "final" / cell.name / tag / f"seed={seed}"
                d.mkdir(parents=True)
                (d / "metrics.json").write_text(json.dumps({"status": "finished", "rounds": _rows(0.1, acc)}))
        results.append(cell_results(cfg, out, cell, {"fedwsa": 1.0}))
    assert paired_decisions(cfg, results) == 1
    scored, untrained = results
    assert untrained["paired"] == {"reference": "fedavg", "status": "reference did not train"}
    w = scored["paired"]["fedwsa"]
    assert w["verdict"] == "helps" and w["p_holm"] == w["p"] == pytest.approx(0.00321, abs=2e-4)
    assert w["mean"] == pytest.approx(0.02) and w["low"] > 0
