"""The launcher's own pieces that need no running Flower process."""

import io
import signal
import sys

import pytest
from flwr.cli.build import build_fab_from_disk

from experiments.launch import PROJECT_DIR, processes
from experiments.launch.preflight import report_errors
from experiments.launch.processes import ProgressView, check_interrupted, on_interrupt
from experiments.launch.submit import stage_app


def test_staged_app_builds_the_same_fab_as_the_project_folder(tmp_path):
    """`flwr run` gets a staged copy of the app (fast to walk); the FAB must not change."""
    staged = stage_app(tmp_path / "fab-src")
    files = {p.relative_to(staged).as_posix() for p in staged.rglob("*") if p.is_file()}
    assert "pyproject.toml" in files and "strategies/server_app.py" in files
    assert all(f == "pyproject.toml" or f.endswith(".py") for f in files)
    assert build_fab_from_disk(staged) == build_fab_from_disk(PROJECT_DIR)  # walks the project: slow


class _Stream(io.StringIO):
    def __init__(self, tty):
        super().__init__()
        self.tty = tty

    def isatty(self):
        return self.tty


def test_progress_is_a_live_line_on_a_terminal_and_sparse_plain_lines_elsewhere():
    lines = [
        "[fedwsa] round   0/2  acc 0.1",
        "[fedwsa] progress round   1/2: 1/3 clients, 2 s elapsed, ~4 s left",
        "[fedwsa] progress round   1/2: 2/3 clients, 4 s elapsed, ~2 s left",
        "[fedwsa] round   1/2  acc 0.5",
    ]
    tty = _Stream(True)
    view = ProgressView(tty)
    for line in lines:
        view.show(line)
    assert tty.getvalue() == (
        "[fedwsa] round   0/2  acc 0.1\n\r\x1b[Kround   1/2: 1/3 clients, 2 s elapsed, ~4 s left"
        "\r\x1b[Kround   1/2: 2/3 clients, 4 s elapsed, ~2 s left\r\x1b[K[fedwsa] round   1/2  acc 0.5\n"
    )
    log = _Stream(False)
    view = ProgressView(log, every_s=60)
    for line in lines:
        view.show(line)
    assert log.getvalue().splitlines() == [lines[0], lines[1], lines[3]]  # the second within 60 s: dropped


def test_a_round_prints_its_progress_as_replies_come_in(tmp_path, capsys):
    from experiments.launch.inprocess import run_inprocess
    from fedwsa.run.config import ExperimentConfig, validate

    run_inprocess(validate(ExperimentConfig(num_clients=3, num_rounds=1, out_dir=str(tmp_path))))
    out = capsys.readouterr().out
    assert "[fedwsa] progress round   1/1: 1/3 clients" in out and "round   1/1  acc" in out


def test_an_interrupt_that_a_finaliser_drops_still_ends_the_run_with_130(monkeypatch, capsys):
    """CPython runs a signal handler wherever the main thread is; raised inside a finaliser,
    the KeyboardInterrupt is reported as unraisable and dropped (a CI run once finished all
    its rounds after Ctrl-C and exited 0). The flag it leaves stops the launcher's loops and
    sets the exit code."""
    monkeypatch.setattr(processes, "_interrupted", False)
    dropped = []
    monkeypatch.setattr(sys, "unraisablehook", lambda u: dropped.append(u.exc_type))
    handlers = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)

    class Finalised:
        def __del__(self):
            on_interrupt(signal.SIGINT, None)  # what Ctrl-C does if it lands in here

    try:
        with pytest.raises(SystemExit) as exit_, report_errors():
            Finalised()  # dropped at once: its finaliser runs here
            assert dropped == [KeyboardInterrupt]  # and nothing was raised to this line
            with pytest.raises(KeyboardInterrupt):
                check_interrupted()  # what the loops call between lines and messages
    finally:
        signal.signal(signal.SIGINT, handlers[0])
        signal.signal(signal.SIGTERM, handlers[1])
    assert exit_.value.code == 130
    assert capsys.readouterr().err.startswith("error: interrupted")
