"""Mode connectivity: interpolation, barrier, path evaluation, multi-stage fusion."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from fedwsa.connectivity import (
    ConnectSettings,
    average,
    barrier,
    evaluate_path,
    finite,
    interpolate,
    run_connect,
    stage_groups,
)  # fmt: skip
from fedwsa.data import load_dataset
from fedwsa.models import build_model
from fedwsa.train import evaluate
from tests.helpers import ROOT


def _states():
    torch.manual_seed(0)
    a, b = build_model("mlp", (1, 8, 8), 10, 8), build_model("mlp", (1, 8, 8), 10, 8)
    clone = lambda m: {k: v.clone() for k, v in m.state_dict().items()}  # noqa: E731
    return a, clone(a), clone(b)  # copies: loading into `a` must not change them


def test_interpolate_endpoints_exact_and_midpoint():
    _, sa, sb = _states()
    assert all(torch.equal(interpolate(sa, sb, 0.0)[k], sa[k]) for k in sa)
    assert all(torch.equal(interpolate(sa, sb, 1.0)[k], sb[k]) for k in sa)
    mid = interpolate(sa, sb, 0.5)
    assert all(torch.allclose(mid[k], average([sa, sb])[k]) for k in sa)


def test_barrier_by_hand():
    # line from 1 to 2: at a = 0.5 it is 1.5; the value 3 is 1.5 above it
    assert barrier([1.0, 3.0, 2.0], [0.0, 0.5, 1.0]) == pytest.approx(1.5)
    assert barrier([1.0, 1.5, 2.0], [0.0, 0.5, 1.0]) == 0.0  # on the line
    with pytest.raises(ValueError):
        barrier([1.0, 2.0], [0.1, 1.0])


def test_path_endpoints_match_models_and_self_barrier_is_zero():
    model, sa, sb = _states()
    ds = load_dataset("digits")
    rows = evaluate_path(model, sa, sb, ds.x_test, ds.y_test, np.linspace(0, 1, 5))
    for state, row in ((sa, rows[0]), (sb, rows[-1])):
        model.load_state_dict(state)
        assert (row["loss"], row["accuracy"]) == evaluate(model, ds.x_test, ds.y_test)
    same = evaluate_path(model, sa, sa, ds.x_test, ds.y_test, np.linspace(0, 1, 5))
    assert barrier([r["loss"] for r in same], np.linspace(0, 1, 5)) == pytest.approx(0.0, abs=1e-6)


def test_stage_groups():
    assert stage_groups(4, "pairwise") == [[0, 1], [2, 3]]
    assert stage_groups(3, "pairwise") == [[0, 1], [2]]
    assert stage_groups(3, "all") == [[0, 1, 2]]


def test_run_connect_on_digits_is_deterministic():
    s = ConnectSettings(model="mlp", hidden=16, seed=1, num_models=3, subsets="halves", epochs=1,
                        lr=0.05, grid_points=3, stages="pairwise", stage_epochs=1, align=True)  # fmt: skip
    ds = load_dataset("digits")
    res = run_connect(s, ds)
    for v in ("plain", "wsa"):
        assert [r["a"] for r in res[v]["path"]] == [0.0, 0.5, 1.0]
        assert [st["models"] for st in res[v]["stages"]] == [[[0, 1], [2]], [[0, 1, 2]]]
        assert set(res[v]["scopes"]) == {"A", "B", "mid"}
    assert res["wsa"]["path"] != res["plain"]["path"]  # the WSA term changed the training
    assert json.dumps(run_connect(s, ds)) == json.dumps(res)


@pytest.mark.slow
def test_connect_command_writes_outputs(tmp_path):
    cmd = [
        sys.executable,
        "-m",
        "experiments.connect",
        f"hydra.run.dir={tmp_path}",
        "epochs=1",
        "grid_points=5",
    ]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert {"results.json", "path.csv", "connect.png"} <= {p.name for p in tmp_path.iterdir()}
    assert len((tmp_path / "path.csv").read_text().splitlines()) == 6
    bad = subprocess.run([*cmd[:3], "subsets=thirds"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stderr.startswith("error: subsets:")


def test_connect_report_over_seeds(tmp_path, capsys):
    from experiments.connect_report import main as connect_report

    path = [{"a": 0.0, "loss": 0.5, "accuracy": 0.8}, {"a": 1.0, "loss": 0.5, "accuracy": 0.9}]
    for seed, (bl, fused) in enumerate(((1.0, 0.5), (3.0, 0.7))):
        d = tmp_path / str(seed)
        d.mkdir()
        variant = {
            "path": path,
            "barrier_loss": bl,
            "barrier_accuracy": 0.1,
            "stages": [{"accuracy": [fused]}],
        }
        res = {"config": {"seed": seed, "wsa": {"lambda": 1.0}}, "plain": variant, "wsa": variant}
        (d / "results.json").write_text(json.dumps(res))
    assert connect_report([str(tmp_path), "--out", str(tmp_path / "t.md")]) == 0
    table = (tmp_path / "t.md").read_text()
    # loss barrier 1 and 3: mean 2, sample std sqrt(2) = 1.414; fused 50 and 70 %: 60 +- 14.14
    assert "| loss barrier | 2.000 ± 1.414 | 2.000 ± 1.414 |" in table
    assert "| fused accuracy (%) | 60.00 ± 14.14 |" in table
    assert "| endpoint accuracy (%) | 85.00 ± 0.00 |" in table


def test_a_diverged_model_is_reported_as_diverged_and_gets_no_barrier():
    """lambda 1e6 is far past the stable range (about 129 for this mlp at lr 0.05): the WSA
    models blow up; they are named, and no path, barrier or fusion is computed for them."""
    s = ConnectSettings(model="mlp", hidden=16, seed=1, num_models=2, epochs=1, lr=0.05, grid_points=3,
                        wsa_lambda=1e6)  # fmt: skip
    res = run_connect(s, load_dataset("digits"))
    assert res["plain"]["diverged"] == [] and len(res["plain"]["path"]) == 3
    assert res["wsa"]["diverged"] == [0, 1]
    assert res["wsa"]["path"] is None and res["wsa"]["barrier_accuracy"] is None
    assert res["wsa"]["stages"] == []


def test_finite():
    assert finite({"w": torch.ones(2), "steps": torch.tensor([3])})
    assert not finite({"w": torch.tensor([1.0, float("nan")])})
    assert not finite({"w": torch.tensor([float("inf")])})


@pytest.mark.slow
def test_connect_command_exits_1_in_one_line_when_a_model_diverges(tmp_path):
    cmd = [sys.executable, "-m", "experiments.connect", f"hydra.run.dir={tmp_path}", "epochs=1",
           "grid_points=3", "wsa.lambda=1e6"]  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    err = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(err) == 1 and err[0].startswith("error: training diverged")
    assert "beyond the stable range" in proc.stdout
    assert json.loads((tmp_path / "results.json").read_text())["wsa"]["diverged"] == [0, 1]


def test_connect_report_leaves_out_a_diverged_run(tmp_path, capsys):
    from experiments.connect_report import main as connect_report

    path = [{"a": 0.0, "loss": 0.5, "accuracy": 0.8}, {"a": 1.0, "loss": 0.5, "accuracy": 0.9}]
    good = {"diverged": [], "path": path, "barrier_loss": 1.0, "barrier_accuracy": 0.1,
            "stages": [{"accuracy": [0.5]}]}  # fmt: skip
    blown = {"diverged": [0], "path": None, "barrier_loss": None, "barrier_accuracy": None, "stages": []}
    for seed, wsa in enumerate((good, blown)):
        (tmp_path / str(seed)).mkdir()
        res = {"config": {"seed": seed, "wsa": {"lambda": 1.0}}, "plain": good, "wsa": wsa}
        (tmp_path / str(seed) / "results.json").write_text(json.dumps(res))
    assert connect_report([str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert "1 runs (seeds [0])" in captured.out and "leaving out" in captured.err


def test_stopping_after_an_epoch_is_training_that_many_epochs():
    """``train(stop=...)`` ends after the epoch it names, with the optimiser's state carried
    across epochs: the same model, bit for bit, as training that many epochs."""
    from fedwsa.train import train

    torch.manual_seed(0)
    x, y = torch.randn(50, 1, 2, 4), torch.randint(0, 3, (50,))
    a, b = build_model("mlp", (1, 2, 4), 3, 8), build_model("mlp", (1, 2, 4), 3, 8)
    b.load_state_dict(a.state_dict())
    asked = []
    kw = dict(lr=0.1, batch_size=16, momentum=0.9)
    r = train(a, x, y, epochs=5, generator=torch.Generator().manual_seed(3),
              stop=lambda e: asked.append(e) or e == 2, **kw)  # fmt: skip
    train(b, x, y, epochs=2, generator=torch.Generator().manual_seed(3), **kw)
    assert asked == [1, 2] and r.steps == 2 * 4  # ceil(50 / 16) = 4 steps an epoch
    assert all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict())


def test_baselines_see_the_same_starts_and_batches_and_at_zero_strength_are_plain():
    s = ConnectSettings(model="mlp", hidden=16, seed=1, num_models=2, subsets="halves", epochs=1,
                        grid_points=3, baselines=("prox", "wd"), prox_mu=0.0, wd=0.0)  # fmt: skip
    res = run_connect(s, load_dataset("digits"))
    for v in ("prox", "wd"):
        assert res[v]["path"] == res["plain"]["path"] and res[v]["stages"] == res["plain"]["stages"]
    strong = run_connect(
        ConnectSettings(**{**s.__dict__, "prox_mu": 5.0, "wd": 0.01}), load_dataset("digits")
    )
    assert (
        strong["prox"]["path"] != strong["plain"]["path"] and strong["wd"]["path"] != strong["plain"]["path"]
    )
    # the pull to the start keeps the models nearer their initialisation: their midpoint's
    # scope nearer the initial one than plain training's
    init = np.array(strong["target"])
    gap = {
        v: np.abs(np.array(strong[v]["scopes"]["mid"])[:, 1] - init[:, 1]).sum() for v in ("plain", "prox")
    }
    assert gap["prox"] < gap["plain"]


def test_matched_endpoints_stop_at_the_accuracy_asked_for():
    s = ConnectSettings(model="mlp", hidden=16, seed=1, num_models=2, subsets="halves", epochs=10,
                        grid_points=3, lr=0.1, stop_at=0.8)  # fmt: skip
    res = run_connect(s, load_dataset("digits"))
    for v in ("plain", "wsa"):
        ends = [res[v]["path"][0]["accuracy"], res[v]["path"][-1]["accuracy"]]
        assert all(e < 10 for e in res[v]["epochs"]) and min(ends) >= 0.8, (v, res[v]["epochs"], ends)
    # a model that stopped after e epochs was still below the mark after e - 1 (else it stops there)
    e = res["plain"]["epochs"][0]
    early = run_connect(
        ConnectSettings(**{**s.__dict__, "stop_at": 0.0, "epochs": e - 1}), load_dataset("digits")
    )
    assert early["plain"]["path"][0]["accuracy"] < 0.8


@pytest.mark.parametrize(("override", "key"), [("baselines=[foo]", "baselines"), ("stop_at=1.5", "stop_at"),
                                               ("prox_mu=-1", "prox_mu")])  # fmt: skip
def test_bad_baseline_settings_are_one_line(tmp_path, override, key):
    cmd = [sys.executable, "-m", "experiments.connect", override, f"out_dir={tmp_path}"]
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and p.stderr.startswith(f"error: {key}: ") and len(p.stderr.splitlines()) == 1
