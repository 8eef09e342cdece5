"""Bad outputs, checkpoints and data: one line on stderr, the right exit code, nothing
started. In process (Hydra's compose API + the entry points' shared ``execute``), so
the cases cost no interpreter start; tests/test_e2e.py checks the real command line."""

import contextlib
import dataclasses
import json
import signal

import pytest
import torch
from hydra import compose, initialize_config_dir

from experiments.launch.preflight import (
    CONF_DIR,
    already_finished,
    execute,
    preflight_dirs,
    resolve,
    warn_algorithm,
)
from fedwsa.run import checkpoint
from fedwsa.run.checkpoint import Checkpoint
from fedwsa.run.config import ExperimentConfig


@contextlib.contextmanager
def _signal_handlers_kept():
    """``execute`` installs the launcher's SIGINT and SIGTERM handlers: pytest's come back after."""
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in handlers.items():
            signal.signal(s, h)


def _execute(overrides, capsys):
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides)
    with _signal_handlers_kept(), pytest.raises(SystemExit) as e:
        execute(cfg, lambda exp: pytest.fail("must not start Flower"), "test")
    return e.value.code, capsys.readouterr().err


@pytest.mark.parametrize(
    ("case", "code", "message"),
    [
        ("file_as_dir", 2, "out_dir: cannot create a folder under"),
        ("unfinished", 2, "resume: "),
        ("corrupt", 1, "no usable checkpoint"),
        ("other_run", 1, "belongs to a run with other settings"),
        ("resume_nowhere", 2, "is not a folder; give the output folder of the run to continue"),
        ("resume_empty", 2, "holds no run (no config.json, no checkpoints/)"),
        ("corrupt_data", 1, "may be truncated or corrupted"),
        ("resume_folder", 1, "belongs to a run with other settings"),
    ],
)  # fmt: skip
def test_bad_outputs_checkpoints_and_data_are_one_line_errors(tmp_path, case, code, message, capsys):
    out = tmp_path / "run"
    ckpts = out / "checkpoints"
    args = [f"out_dir={out}"]
    if case == "file_as_dir":
        (tmp_path / "a_file").write_text("")
        args = [f"out_dir={tmp_path / 'a_file' / 'run'}"]
    elif case in ("unfinished", "corrupt"):
        ckpts.mkdir(parents=True)
        (ckpts / "round-00002.ckpt").write_bytes(b"fedwsa-checkpoint 1 0000\nbroken")
        args += ["resume=true"] if case == "corrupt" else []
    elif case == "other_run":
        checkpoint.save(out, Checkpoint(1, {}, "{}", {}, {}, {}))
        args += ["resume=true"]
    elif case == "resume_nowhere":  # main started a fresh run in the mistyped folder
        args += [f"resume={tmp_path / 'typo'}"]
    elif case == "resume_empty":
        (tmp_path / "empty").mkdir()
        args += [f"resume={tmp_path / 'empty'}"]
    elif case == "corrupt_data":
        (tmp_path / "MNIST" / "raw").mkdir(parents=True)
        (tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x03")
        args += ["dataset=mnist", f"dataset.root={tmp_path}", "dataset.download=false"]
    elif case == "resume_folder":  # resume=<folder>: that folder's checkpoints are the ones read
        checkpoint.save(tmp_path / "elsewhere", Checkpoint(1, {}, "{}", {}, {}, {}))
        args += [f"resume={tmp_path / 'elsewhere'}"]
    got, err = _execute(args, capsys)
    lines = err.strip().splitlines()
    assert got == code, err
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], err
    if case in ("unfinished", "corrupt"):
        assert (ckpts / "round-00002.ckpt").exists()  # nothing written is lost
    if case in ("resume_nowhere", "resume_empty"):
        assert sorted(p.name for p in tmp_path.iterdir()) == (["empty"] if case == "resume_empty" else [])


def test_unwritable_hydra_dir_is_refused_before_hydra_starts(tmp_path, capsys):
    (tmp_path / "a_file").write_text("")
    with pytest.raises(SystemExit) as e:
        preflight_dirs([f"hydra.run.dir={tmp_path / 'a_file' / 'x'}"])
    assert e.value.code == 2
    assert "hydra.run.dir: cannot create a folder under" in capsys.readouterr().err
    preflight_dirs([f"hydra.run.dir={tmp_path / 'new' / 'x'}", "resume=true"])  # fine: creatable


def test_resume_of_a_folder_without_a_run_is_refused_before_hydra_starts(tmp_path, capsys):
    """Before Hydra makes its own output folder: a mistyped resume path creates nothing."""
    with pytest.raises(SystemExit) as e:
        preflight_dirs([f"resume={tmp_path / 'typo'}"])
    assert e.value.code == 2 and "resume: " in capsys.readouterr().err
    assert not (tmp_path / "typo").exists()


def test_already_finished_skips_only_the_same_finished_run(tmp_path):
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        exp = resolve(compose("config", [f"out_dir={tmp_path}"]))
    assert not already_finished(exp)  # nothing there
    (tmp_path / "config.json").write_text(json.dumps({"config": exp.as_dict()}))
    (tmp_path / "metrics.json").write_text(json.dumps({"status": "running", "rounds": []}))
    assert not already_finished(exp)  # not finished
    (tmp_path / "metrics.json").write_text(json.dumps({"status": "finished", "rounds": []}))
    assert already_finished(exp)
    assert already_finished(dataclasses.replace(exp, verbose=True))  # does not change results
    assert not already_finished(dataclasses.replace(exp, num_rounds=exp.num_rounds + 1))


def test_the_dataclasses_are_the_one_source_of_defaults(tmp_path):
    """Hydra composes from ``ExperimentConfig()``: with the plain options chosen, the two agree."""
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        exp = resolve(
            compose("config", ["strategy=fedavg", "model=mlp", f"out_dir={tmp_path}", "dataset.root=data"])
        )
    default = ExperimentConfig()
    expected = dataclasses.replace(
        default, out_dir=exp.out_dir, dataset=dataclasses.replace(default.dataset, root=exp.dataset.root)
    )
    assert exp == expected


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_on_a_machine_without_it_is_one_line_exit_2(tmp_path, capsys):
    code, err = _execute([f"out_dir={tmp_path / 'run'}", "device=cuda"], capsys)
    assert (
        code == 2
        and err.strip()
        == "error: device: cuda: CUDA is not available on this machine (use device=cpu or auto)"
    )
    assert not (tmp_path / "run").exists()


def test_a_bad_split_file_is_one_line_exit_2_before_anything_starts(tmp_path, capsys):
    (tmp_path / "s.json").write_text('{"0": [1], "1": [99999]}')
    args = [
        f"out_dir={tmp_path / 'run'}",
        "num_clients=2",
        "partition=file",
        f"partition.path={tmp_path / 's.json'}",
    ]
    code, err = _execute(args, capsys)
    assert (
        code == 2 and err.strip().startswith("error: partition.path: ") and "client 1 has index 99999" in err
    )
    code, err = _execute([f"out_dir={tmp_path / 'run'}", "partition=file"], capsys)
    assert (
        code == 2
        and err.strip() == "error: partition.path: partition=file needs the split file: partition.path=<json>"
    )


def test_a_lambda_beyond_sgd_s_stable_range_is_warned_in_one_line(tmp_path, capsys):
    def exp(*overrides):
        with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
            return resolve(compose("config", ["dataset=digits", *overrides, f"out_dir={tmp_path}"]))

    warn_algorithm(exp("strategy.wsa_lambda=1.0"))  # well inside: nothing said
    assert capsys.readouterr().out == ""
    warn_algorithm(exp("strategy.wsa_lambda=1000"))
    out = capsys.readouterr().out.strip()
    assert out.count("\n") == 0 and "strategy.wsa_lambda=1000 is beyond the stable range" in out
    assert "set strategy.wsa_normalize=per_weight" in out and "most curved: net." in out
    warn_algorithm(exp("strategy.wsa_lambda=1000", "strategy.wsa_normalize=per_weight"))
    assert "lambda < 38 " in capsys.readouterr().out  # 2 (1 + 0.9) / (0.05 * 2)


def test_a_diverged_inprocess_run_is_one_line_exit_1_and_recorded_as_failed(tmp_path, capsys):
    """engine=inprocess reports a run that cannot go on as the simulation does (no traceback)."""
    from experiments.launch.inprocess import run_inprocess

    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", ["engine=inprocess", "strategy.wsa_lambda=1e12", "num_rounds=3",
                                 "max_failed_rounds=1", f"out_dir={tmp_path}"])  # fmt: skip
    with _signal_handlers_kept(), pytest.raises(SystemExit) as e:
        execute(cfg, run_inprocess, "test")
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 1 and err[-1].startswith("error: the run failed: 1 rounds in a row without")
    assert "Traceback" not in "\n".join(err)
    assert json.loads((tmp_path / "metrics.json").read_text())["status"] == "failed"


def _run_inprocess(overrides):
    """``execute`` of an in-process run; the exit code (None: it finished)."""
    from experiments.launch.inprocess import run_inprocess

    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", ["engine=inprocess", *overrides])
    try:
        with _signal_handlers_kept():
            execute(cfg, run_inprocess, "test")
        return None
    except SystemExit as e:
        return e.code


def test_sigterm_mid_run_says_interrupted_and_resume_completes_the_same_run(tmp_path, capsys, monkeypatch):
    """SIGTERM after round 1 of 3 (in process): exit 130, metrics.json says interrupted with
    the signal and the last round, and resume=true ends with the uninterrupted run's rows."""
    import os

    import strategies.rounds as rounds
    from experiments.launch import processes
    from tests.helpers import metrics

    monkeypatch.setattr(processes, "_interrupted", False)  # restored after the test, as _signal
    monkeypatch.setattr(processes, "_signal", 0)
    record = rounds.Session.record

    def record_then_sigterm(self, rnd, updates, failed):
        record(self, rnd, updates, failed)
        if rnd == 1:
            os.kill(os.getpid(), signal.SIGTERM)

    common = ["num_clients=3", "num_rounds=3", "strategy=fedwsa"]
    assert _run_inprocess([*common, f"out_dir={tmp_path / 'whole'}"]) is None
    monkeypatch.setattr(rounds.Session, "record", record_then_sigterm)

    code = _run_inprocess([*common, f"out_dir={tmp_path / 'cut'}"])

    doc = json.loads((tmp_path / "cut" / "metrics.json").read_text())
    assert code == 130 and "resume=true continues it" in capsys.readouterr().err
    assert (doc["status"], doc["signal"], doc["last_round"]) == ("interrupted", "SIGTERM", 1)
    assert [r["round"] for r in doc["rounds"]] == [0, 1]

    monkeypatch.setattr(rounds.Session, "record", record)
    monkeypatch.setattr(processes, "_interrupted", False)
    assert _run_inprocess([*common, f"out_dir={tmp_path / 'cut'}", "resume=true"]) is None
    assert metrics(tmp_path / "cut") == metrics(tmp_path / "whole")


def test_a_ray_address_where_no_ray_answers_fails_at_once_in_one_line(tmp_path, capsys):
    from experiments.launch.simulation import simulate

    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", ["ray_address=127.0.0.1:1", f"out_dir={tmp_path}"])
    with _signal_handlers_kept(), pytest.raises(SystemExit) as e:
        execute(cfg, simulate, "test")
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 1 and len(err) == 1
    assert err[0].startswith("error: ray_address=127.0.0.1:1: no Ray answers there")


def test_an_algorithm_s_knobs_are_typed_and_complete_once_resolved(tmp_path):
    """``strategy.wsa_lambda=1`` and ``=1.0`` are one config; config.json lists every knob."""
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        one = resolve(compose("config", [f"out_dir={tmp_path}", "strategy=fedwsa", "strategy.wsa_lambda=1"]))
        other = resolve(
            compose("config", [f"out_dir={tmp_path}", "strategy=fedwsa", "strategy.wsa_lambda=1.0"])
        )
    assert one == other and one.identity() == other.identity()
    assert one.strategy.as_dict() == {
        "name": "fedwsa", "wsa_lambda": 1.0, "distance": "kl", "fusion": "mean", "fusion_trim": 0.2,
        "align_global": False, "scope_all": False, "wsa_normalize": "none", "target_rule": "fused",
    }  # fmt: skip
