"""The report: statistics by hand, refusal to mix settings, figures from stored metrics."""

import json

import pytest

from experiments.plots import growth
from experiments.report import main as report_main
from experiments.summary import (
    ReportError,
    check_comparable,
    find_runs,
    label_runs,
    mean_std,
    rounds_to,
    summary,
)
from fedwsa.run.config import ExperimentConfig, StrategyConfig

LAYERS = ["w1", "w2"]
SPREAD = {"client_sigma_std": [0.01, 0.02], "client_sigma_mean": [0.1, 0.2]}


def _write_run(root, name, strategy, seed, alpha, accs, lr=0.05, status="finished", skip=-1):
    """A run folder as experiments.run writes it, with made-up numbers (no training);
    round ``skip`` had no replies (no client scopes), as when every reply was rejected."""
    d = root / name
    d.mkdir(parents=True)
    s = StrategyConfig(strategy, **({"wsa_lambda": 0.1} if strategy == "fedwsa" else {}))
    cfg = ExperimentConfig(strategy=s, seed=seed, lr=lr, out_dir=str(d))
    cfg = json.loads(cfg.to_json())
    cfg["partition"]["alpha"] = alpha
    (d / "config.json").write_text(json.dumps({"config": cfg, "evaluated_on": "test"}))
    rows = [{"round": i, "test_accuracy": a, "elapsed_s": 1.5 * i} for i, a in enumerate(accs)]
    (d / "metrics.json").write_text(json.dumps({"status": status, "rounds": rows}))

    def scope(i):
        return [[0.0, 0.1 + 0.01 * i], [0.0, 0.2]]

    recs = [{"round": i, "global": scope(i), "target": scope(i) if (strategy == "fedwsa" and i) else None,
             **(SPREAD if i not in (0, skip) else {})}
            for i in range(len(accs))]  # fmt: skip
    (d / "scopes.json").write_text(json.dumps({"layers": LAYERS, "rounds": recs}))
    return d


@pytest.fixture
def sweep(tmp_path):
    accs = {
        ("fedavg", 0): [0.1, 0.5, 0.6], ("fedavg", 1): [0.1, 0.4, 0.8],
        ("fedwsa", 0): [0.1, 0.6, 0.7], ("fedwsa", 1): [0.1, 0.7, 0.9],
    }  # fmt: skip
    for (strategy, seed), a in accs.items():
        for alpha in (0.1, 0.5):
            _write_run(tmp_path, f"{strategy}_{seed}_{alpha}", strategy, seed, alpha, a, skip=seed + 1)
    _write_run(tmp_path, "unfinished", "fedavg", 2, 0.1, [0.1], status="running")
    return tmp_path


def test_mean_std_by_hand():
    # mean of 0.6, 0.8 is 0.7; sample std = sqrt(((-0.1)^2 + 0.1^2) / 1) = 0.141421...
    assert mean_std([0.6, 0.8]) == pytest.approx((0.7, 0.1414213562))
    assert mean_std([0.5]) == (0.5, 0.0)
    assert rounds_to([0.1, 0.5, 0.7], 0.6) == 2 and rounds_to([0.1], 0.6) is None


def test_report_table_figures_and_summary(sweep, capsys):
    assert report_main([str(sweep), "--target", "0.65"]) == 0
    out = sweep / "report"
    assert {"results.md", "results.csv", "accuracy.png", "final.png", "scopes_alpha0.1.png",
            "scopes_alpha0.5.png", "sigma_growth_alpha0.1.png", "sigma_growth_alpha0.5.png",
            "summary.md"} <= {p.name for p in out.iterdir()}  # fmt: skip
    table = (out / "results.md").read_text()
    # fedwsa final: 0.7, 0.9 -> 80.00 +- 14.14; best the same; fedavg final 0.6, 0.8 -> 70.00 +- 14.14
    # rounds to 0.65: fedwsa seed 0 at round 2, seed 1 at round 1 -> 1.5; fedavg only seed 1 (round 2)
    assert "| fedwsa, wsa_lambda=0.1 | 0.1 | 2 | 80.00 ± 14.14 | 80.00 ± 14.14 | 1.5 (2/2) | 3.0 |" in table
    assert "| fedavg | 0.5 | 2 | 70.00 ± 14.14 | 70.00 ± 14.14 | 2.0 (1/2) | 3.0 |" in table
    assert "within one seed std" in (out / "summary.md").read_text()
    for png in out.glob("*.png"):
        assert png.stat().st_size > 10_000


def test_sigma_growth_by_hand(sweep):
    # _write_run's layer w1 has sigma 0.1 + 0.01 i in round i: 0.10, 0.11, 0.12 -> 1, 1.1, 1.2;
    # w2 keeps 0.2 -> 1, 1, 1
    runs, _ = find_runs([sweep])
    assert growth(runs[:1], 0) == [pytest.approx([1.0, 1.1, 1.2])]
    assert growth(runs[:1], 1) == [[1.0, 1.0, 1.0]]


def test_refuses_mixed_settings(sweep):
    _write_run(sweep, "other_lr", "fedavg", 3, 0.1, [0.1, 0.2, 0.3], lr=0.5)
    runs, unfinished = find_runs([sweep])
    assert [u.name for u in unfinished] == ["unfinished"]
    with pytest.raises(ReportError, match="differ in lr"):
        check_comparable(runs)
    assert report_main([str(sweep)]) == 2


def test_summary_verdicts():
    stats = [
        {"strategy": "a", "alpha": 0.1, "seeds": 3, "final_mean": 0.80, "final_std": 0.01},
        {"strategy": "b", "alpha": 0.1, "seeds": 3, "final_mean": 0.75, "final_std": 0.01},
    ]
    assert "a clear difference" in summary(stats)[0] and "5.00 pp" in summary(stats)[0]


def test_server_knob_that_varies_is_labelled(tmp_path):
    _write_run(tmp_path, "a", "fedavg", 0, 0.5, [0.1, 0.5])
    _write_run(tmp_path, "b", "fedavg", 0, 0.5, [0.1, 0.6])
    cfg = json.loads((tmp_path / "b" / "config.json").read_text())
    cfg["config"]["update_clip"] = 2.0
    (tmp_path / "b" / "config.json").write_text(json.dumps(cfg))
    runs, _ = find_runs([tmp_path])
    check_comparable(runs)
    label_runs(runs)
    assert sorted(r.label for r in runs) == ["fedavg, update_clip=0.0", "fedavg, update_clip=2.0"]


def test_runs_written_before_the_registry_label_as_new_ones():
    """A run from before #32 lists every algorithm's knobs in its config; one of today lists
    its own: the same algorithm at the same settings gets the same label."""
    from experiments.summary import Run, label_runs

    old = {"name": "fedprox", "proximal_mu": 0.01, "wsa_lambda": 0.0, "distance": "kl", "fusion": "mean",
           "align_global": False, "scope_all": False, "wsa_normalize": "none"}  # fmt: skip
    runs = [Run(None, {"strategy": s}, [], None) for s in (old, {"name": "fedprox", "proximal_mu": 0.01})]
    runs += [
        Run(None, {"strategy": {"name": "fedwsa", "wsa_lambda": 1.0, "distance": d}}, [], None)
        for d in ("kl", "w2")
    ]
    runs.append(Run(None, {"strategy": {"name": "fedwsa"}}, [], None))  # a knob left out: its default
    label_runs(runs)
    assert [r.label for r in runs] == [
        "fedprox, proximal_mu=0.01", "fedprox, proximal_mu=0.01",
        "fedwsa, wsa_lambda=1.0, distance=kl", "fedwsa, wsa_lambda=1.0, distance=w2",
        "fedwsa, wsa_lambda=1.0, distance=kl",
    ]  # fmt: skip


def test_paired_table_by_hand(sweep, capsys):
    """fedwsa minus fedavg per seed: 0.7 - 0.6 and 0.9 - 0.8, so +10 pp twice: no spread, so
    the interval is that one value and p = 0 (``experiments.study.rules.paired``); Holm over the
    two alphas keeps 0."""
    assert report_main([str(sweep), "--paired", "fedavg"]) == 0
    text = (sweep / "report" / "paired.md").read_text()
    assert "| fedwsa, wsa_lambda=0.1 | 0.1 | 2 | +10.00 | [+10.00, +10.00] | 0 | 0 |" in text
    assert "| fedwsa, wsa_lambda=0.1 | 0.5 | 2 | +10.00 | [+10.00, +10.00] | 0 | 0 |" in text
    assert "Holm over the 2 comparisons" in text
    assert report_main([str(sweep), "--paired", "fedprox"]) == 2
    assert "error: --paired fedprox: no such strategy label" in capsys.readouterr().err


def test_a_key_older_runs_lack_counts_as_its_default(sweep):
    """Runs written before ``attack`` existed have no such section; today's have it at its
    defaults: comparable. At another value: refused."""
    runs, _ = find_runs([sweep])
    for r in runs[:2]:
        r.config = {k: v for k, v in r.config.items() if k != "attack"}
    check_comparable(runs)
    runs[2].config["attack"] = {**runs[2].config["attack"], "kind": "noise", "clients": 1.0}
    with pytest.raises(ReportError, match=r"differ in attack\.clients"):
        check_comparable(runs)
