"""Experiment tracking: what is logged (by hand), the logged values read back from each
tracker's own files and compared with metrics.json, a resumed run continuing the same
tracked run, a broken tracker not failing the run, a missing extra exiting 2."""

import dataclasses
import glob
import json
import struct
import subprocess
import sys

import pytest
from omegaconf import OmegaConf

from fedwsa.run import tracking
from fedwsa.run.config import ConfigError, ExperimentConfig, TrackingConfig, WandbConfig
from fedwsa.run.tracking import final_metrics, round_metrics
from tests.helpers import ROOT

LAYERS = ["a.weight", "b.weight"]


def test_round_metrics_by_hand():
    row = {"round": 2, "test_accuracy": 0.5, "test_loss": 1.25, "train_loss": 0.75, "num_replies": 3,
           "num_failures": 1, "round_time_s": 2.5}  # fmt: skip
    scopes = {"global": [[0.1, 0.2], [0.3, 0.4]], "target": [[0.0, 0.25], [0.0, 0.5]],
              "client_sigma_mean": [0.21, 0.41], "client_sigma_std": [0.01, 0.02]}  # fmt: skip
    m = round_metrics(row, scopes, LAYERS)
    assert m == {
        "test/accuracy": 0.5, "test/loss": 1.25, "train/loss": 0.75, "clients/replies": 3.0,
        "clients/failures": 1.0, "time/round_s": 2.5,
        "scope/a.weight/global_mu": 0.1, "scope/a.weight/global_sigma": 0.2,
        "scope/a.weight/target_mu": 0.0, "scope/a.weight/target_sigma": 0.25,
        "scope/a.weight/client_sigma_mean": 0.21, "scope/a.weight/client_sigma_std": 0.01,
        "scope/b.weight/global_mu": 0.3, "scope/b.weight/global_sigma": 0.4,
        "scope/b.weight/target_mu": 0.0, "scope/b.weight/target_sigma": 0.5,
        "scope/b.weight/client_sigma_mean": 0.41, "scope/b.weight/client_sigma_std": 0.02,
    }  # fmt: skip
    # round 0: no training, no target, no clients
    m0 = round_metrics(
        {"round": 0, "test_accuracy": 0.1, "test_loss": 2.3}, {"global": scopes["global"]}, LAYERS
    )
    assert set(m0) == {"test/accuracy", "test/loss", "clients/failures", "time/round_s",
                       *(f"scope/{n}/global_{s}" for n in LAYERS for s in ("mu", "sigma"))}  # fmt: skip
    rows = [{"round": 0, "test_accuracy": 0.1, "test_loss": 2.0},
            {"round": 1, "test_accuracy": 0.6, "test_loss": 1.0},
            {"round": 2, "test_accuracy": 0.5, "test_loss": 1.1, "elapsed_s": 9.0}]  # fmt: skip
    assert final_metrics(rows) == {"final/accuracy": 0.5, "final/best_accuracy": 0.6, "final/loss": 1.1,
                                   "final/rounds": 2.0, "final/elapsed_s": 9.0}  # fmt: skip


def test_missing_extra_exits_before_anything_starts(monkeypatch, tmp_path):
    from experiments.launch.preflight import resolve

    real = tracking.importlib.util.find_spec
    monkeypatch.setattr(tracking.importlib.util, "find_spec", lambda n: None if n == "wandb" else real(n))
    exp = ExperimentConfig(
        tracking=TrackingConfig(wandb=WandbConfig(enabled=True)), out_dir=str(tmp_path / "o")
    )
    with pytest.raises(ConfigError, match=r'tracking: wandb is not installed: pip install -e "\.\[wandb\]"'):
        resolve(OmegaConf.create(exp.as_dict()))
    assert not (tmp_path / "o").exists()
    assert (
        exp.identity() == dataclasses.replace(exp, tracking=TrackingConfig()).identity()
    )  # resumable with or without


def _run(out, *overrides):
    cmd = [sys.executable, "-m", "experiments.run", f"hydra.run.dir={out}", "engine=inprocess",
           "num_clients=3", "num_rounds=3", "strategy=fedwsa", "model=mlp", *overrides]  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return proc.stdout


def _expected(out):
    rows = json.loads((out / "metrics.json").read_text())["rounds"]
    scopes = json.loads((out / "scopes.json").read_text())
    return [round_metrics(r, s, scopes["layers"]) for r, s in zip(rows, scopes["rounds"], strict=True)]


def _tensorboard(out):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(out / "tensorboard"), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def _wandb_history(folder):
    """History rows of W&B offline run files (their record log: 7-byte header, 32 KiB blocks,
    each record a protobuf ``Record``)."""
    from wandb.proto import wandb_internal_pb2 as pb

    rows = []
    for path in sorted(glob.glob(str(folder / "wandb" / "offline-run-*" / "run-*.wandb"))):
        with open(path, "rb") as f:
            buf, pos, part, records = f.read(), 7, b"", []
        assert buf[:4] == b":W&B"
        while pos + 7 <= len(buf):
            space = 32768 - pos % 32768
            if space < 7:
                pos += space
                continue
            _, n, kind = struct.unpack("<IHB", buf[pos : pos + 7])
            if kind == 0 and n == 0:
                pos += space
                continue
            data, pos = buf[pos + 7 : pos + 7 + n], pos + 7 + n
            part = data if kind in (1, 2) else part + data
            if kind in (1, 4):
                records.append(part)
        for d in records:
            r = pb.Record()
            r.ParseFromString(d)
            if r.WhichOneof("record_type") == "history":
                rows.append(
                    {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in r.history.item}
                )
    return rows


@pytest.mark.slow
def test_logged_values_read_back_and_resume_continues_the_run(tmp_path):
    pytest.importorskip("tensorboard")
    pytest.importorskip("wandb")
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    out, uri = tmp_path / "run", f"sqlite:///{tmp_path / 'mlflow.db'}"
    _run(out, "tracking=[tensorboard,wandb,mlflow]", f"tracking.mlflow.uri={uri}")
    expected = _expected(out)
    ids = json.loads((out / "tracking.json").read_text())
    config = json.loads((out / "config.json").read_text())["config"]
    # TensorBoard: every scalar at every round; the config as hyperparameters
    scalars = _tensorboard(out)
    for key in expected[1]:
        assert scalars[key] == [
            (r, pytest.approx(m[key], rel=1e-6)) for r, m in enumerate(expected) if key in m
        ]
    assert scalars["final/accuracy"] == [(3, pytest.approx(expected[-1]["test/accuracy"], rel=1e-6))]
    # MLflow: metric histories, the config as params, the model as an artifact, FINISHED
    client = MlflowClient(uri)
    run = client.get_run(ids["mlflow_run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.params["lr"] == str(config["lr"]) and run.data.params["strategy.name"] == "fedwsa"
    for key in (
        "test/accuracy",
        "train/loss",
        f"scope/{json.loads((out / 'scopes.json').read_text())['layers'][0]}/target_sigma",
    ):
        hist = sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, key))
        assert hist == [(r, pytest.approx(m[key])) for r, m in enumerate(expected) if key in m]
    assert [a.path for a in client.list_artifacts(run.info.run_id)] == ["model.pt"]
    # W&B offline files: one history row per round, the same values
    hist = _wandb_history(out)
    assert [h["_step"] for h in hist] == [0, 1, 2, 3]
    for h, m in zip(hist, expected, strict=True):
        assert {k: h[k] for k in m} == pytest.approx(m)

    # resume after round 2 (as after a crash during round 3): the same tracked runs go on
    (out / "checkpoints" / "round-00003.ckpt").unlink()
    meta = json.loads((out / "metrics.json").read_text())
    (out / "metrics.json").write_text(json.dumps({**meta, "status": "stopped"}))
    _run(out, "tracking=[tensorboard,wandb,mlflow]", f"tracking.mlflow.uri={uri}", "resume=true")
    untimed = [{k: v for k, v in m.items() if k != "time/round_s"} for m in expected]
    assert [
        {k: v for k, v in m.items() if k != "time/round_s"} for m in _expected(out)
    ] == untimed  # bit-identical
    assert json.loads((out / "tracking.json").read_text()) == ids
    scalars = _tensorboard(out)  # the first attempt's round 3 purged, not doubled
    assert scalars["test/accuracy"] == [
        (r, pytest.approx(m["test/accuracy"])) for r, m in enumerate(expected)
    ]
    assert client.get_run(ids["mlflow_run_id"]).info.status == "FINISHED"
    steps = sorted(m.step for m in client.get_metric_history(ids["mlflow_run_id"], "test/accuracy"))
    assert steps == [0, 1, 2, 3, 3]  # MLflow keeps both values logged at step 3 (they are equal)
    assert len(client.search_runs([run.info.experiment_id])) == 1
    offline = glob.glob(str(out / "wandb" / "offline-run-*"))
    assert len(offline) == 2 and all(p.endswith(ids["wandb_id"]) for p in offline)  # same W&B run id


def test_a_failing_tracker_is_reported_once_and_the_run_goes_on(tmp_path, capsys):
    """The trackers' guard (what the round loop calls): a tracker that cannot start or log
    prints one line and stops; the others, and the run, go on."""
    pytest.importorskip("mlflow")
    pytest.importorskip("tensorboard")
    from fedwsa.run.config import MlflowConfig, TensorboardConfig
    from fedwsa.run.tracking import Trackers

    bad = MlflowConfig(enabled=True, uri="sqlite:////proc/no/such/folder/mlflow.db")
    exp = ExperimentConfig(tracking=TrackingConfig(mlflow=bad, tensorboard=TensorboardConfig(enabled=True)),
                           out_dir=str(tmp_path))  # fmt: skip
    t = Trackers(exp, LAYERS)
    scopes = {"global": [[0.0, 0.1], [0.0, 0.2]]}
    for rnd in range(3):
        t.round({"round": rnd, "test_accuracy": 0.5, "test_loss": 1.0}, scopes)
    t.finish([{"round": 2, "test_accuracy": 0.5, "test_loss": 1.0}], tmp_path / "model.pt")
    out = capsys.readouterr().out.splitlines()
    warnings = [line for line in out if "tracker mlflow failed" in line]
    assert len(warnings) == 1 and "tracking with mlflow stopped, the run goes on" in warnings[0]
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))  # TensorBoard went on

    class Broken:  # a tracker that fails while logging, after a good start
        def log(self, step, metrics):
            raise OSError("disk full")

    t = Trackers(None, LAYERS)
    t.active["wandb"] = Broken()
    t.round({"round": 1, "test_accuracy": 0.5, "test_loss": 1.0}, scopes)
    t.round({"round": 2, "test_accuracy": 0.5, "test_loss": 1.0}, scopes)
    out = capsys.readouterr().out
    assert out.count("tracker wandb failed (OSError: disk full)") == 1 and not t.active
