"""A run folder's one writer (RunLog) and one reader (RunFolder) agree, and the reader never
raises on a folder that is absent, half-written or not JSON."""

import json

import torch

from fedwsa.run.results import COLUMNS, RunFolder, RunLog


def test_what_the_writer_writes_the_reader_reads_back(tmp_path):
    log = RunLog(tmp_path, ["w"])
    log.add_round({"round": 0, "test_accuracy": 0.25, "test_loss": 2.0}, {"global": [[0.0, 1.0]]})
    assert RunFolder(tmp_path).status() == "running" and not RunFolder(tmp_path).ended()
    log.add_round({"round": 1, "test_accuracy": 0.5, "test_loss": 1.5}, {"global": [[0.1, 0.9]]})
    log.finish({"w": torch.ones(2)})
    (tmp_path / "config.json").write_text(json.dumps({"config": {"seed": 3}, "code_version": "x"}))

    run = RunFolder(tmp_path)

    assert run.status() == "finished" and run.ended()
    assert [r["test_accuracy"] for r in run.rows()] == [0.25, 0.5]
    assert set(run.rows()[0]) == set(COLUMNS)
    assert run.scopes() == {"layers": ["w"], "rounds": log.scopes}
    assert run.config() == {"seed": 3} and run.record()["code_version"] == "x"
    assert run.error() == ""


def test_a_failed_run_says_why(tmp_path):
    log = RunLog(tmp_path, [])
    log.write("failed", "3 rounds in a row without a usable reply")

    run = RunFolder(tmp_path)

    assert run.status() == "failed" and run.ended()
    assert run.error() == "3 rounds in a row without a usable reply"


def test_absent_or_broken_files_read_as_empty(tmp_path):
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "metrics.json").write_text('{"status": "fini')  # half-copied
    (tmp_path / "broken" / "config.json").write_text("[1, 2]")  # JSON, but not a record

    for run in (RunFolder(tmp_path / "nothing"), RunFolder(tmp_path / "broken")):
        assert run.status() == "absent" and not run.ended()
        assert run.rows() == [] and run.config() == {} and run.scopes() is None and run.error() == ""
