"""Bad outputs, checkpoints and data: one line on stderr, the right exit code, nothing
started. In process (Hydra's compose API + the entry points' shared ``execute``), so
the cases cost no interpreter start; tests/test_e2e.py checks the real command line."""

import signal

import pytest
from hydra import compose, initialize_config_dir

from experiments.launch.preflight import CONF_DIR, execute, preflight_dirs
from fedwsa.run import checkpoint
from fedwsa.run.checkpoint import Checkpoint


def _execute(overrides, capsys):
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides)
    handler = signal.getsignal(signal.SIGTERM)
    try:
        with pytest.raises(SystemExit) as e:
            execute(cfg, lambda exp: pytest.fail("must not start Flower"), "test")
    finally:
        signal.signal(signal.SIGTERM, handler)
    return e.value.code, capsys.readouterr().err


@pytest.mark.parametrize(
    ("case", "code", "message"),
    [
        ("file_as_dir", 2, "out_dir: cannot create a folder under"),
        ("unfinished", 2, "resume: "),
        ("corrupt", 1, "no usable checkpoint"),
        ("other_run", 1, "belongs to a run with other settings"),
        ("bad_fault", 2, "test_fault: "),
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
    elif case == "bad_fault":
        args += ["test_fault=1:explode"]
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


def test_unwritable_hydra_dir_is_refused_before_hydra_starts(tmp_path, capsys):
    (tmp_path / "a_file").write_text("")
    with pytest.raises(SystemExit) as e:
        preflight_dirs([f"hydra.run.dir={tmp_path / 'a_file' / 'x'}"])
    assert e.value.code == 2
    assert "hydra.run.dir: cannot create a folder under" in capsys.readouterr().err
    preflight_dirs([f"hydra.run.dir={tmp_path / 'new' / 'x'}", "resume=true"])  # fine: creatable
