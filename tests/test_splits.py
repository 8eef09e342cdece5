"""Client splits as files (fedwsa/run/splits.py, experiments.split, partition=file)."""

import json

import numpy as np
import pytest
from hydra import compose, initialize_config_dir

from experiments.launch.inprocess import run_inprocess
from experiments.launch.preflight import CONF_DIR, resolve
from experiments.split import main as split_main
from fedwsa.partition import PartitionError
from fedwsa.run.splits import read_split, write_split
from tests.helpers import metrics


def _write(path, doc):
    path.write_text(json.dumps(doc))
    return path


def test_a_niid_bench_file_is_read_and_overlaps_are_reported(tmp_path):
    path = _write(tmp_path / "s.json", {"0": [3, 1, 2], "1": [2, 5]})  # no header, as NIID-Bench writes
    parts, note = read_split(path, 2, 8, "digits")
    assert [p.tolist() for p in parts] == [[1, 2, 3], [2, 5]]
    assert note.endswith("2 clients, 1 samples in more than one client, 4 of 8 in none")


@pytest.mark.parametrize(
    ("doc", "words"),
    [
        ({"0": [1], "1": [2], "2": [3]}, "holds 3 clients (ids 0-2), num_clients is 2"),
        ({"0": [1], "x": [2]}, "client ids must be 0, 1, ...; got 'x'"),
        ({"0": [1], "1": [8]}, "client 1 has index 8, outside [0, 8)"),
        ({"0": [1], "1": [-1]}, "client 1 has index -1"),
        ({"0": [1], "1": [1.5]}, "client 1's indices must be a list of integers"),
        ({"0": [1], "1": []}, "client 1 has no samples"),
        ({"_meta": {"dataset": "fmnist"}, "0": [1], "1": [2]}, "a split of 'fmnist', the experiment's"),
        ({"_meta": {"num_samples": 9}, "0": [1], "1": [2]}, "made for 9 training samples"),
        ([[1], [2]], "expected an object"),
    ],
)  # fmt: skip
def test_a_bad_file_is_one_line_naming_the_problem(tmp_path, doc, words):
    with pytest.raises(PartitionError) as e:
        read_split(_write(tmp_path / "s.json", doc), 2, 8, "digits")
    assert words in str(e.value) and "\n" not in str(e.value)
    (tmp_path / "t.json").write_text("{not json")
    with pytest.raises(PartitionError, match="not a JSON split file"):
        read_split(tmp_path / "t.json", 2, 8, "digits")
    with pytest.raises(PartitionError, match="no such file"):
        read_split(tmp_path / "none.json", 2, 8, "digits")


def test_write_then_read_is_the_same_split(tmp_path):
    parts = [np.array([0, 4]), np.array([1, 2, 3])]
    write_split(tmp_path / "s.json", parts, "digits", 5)
    back, _ = read_split(tmp_path / "s.json", 2, 5, "digits")
    assert [p.tolist() for p in back] == [[0, 4], [1, 2, 3]]


def _run(tmp_path, name, *overrides):
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        exp = resolve(
            compose("config", ["num_clients=4", "num_rounds=2", *overrides, f"out_dir={tmp_path / name}"])
        )
    run_inprocess(exp)
    return metrics(tmp_path / name)[0]


def test_a_run_on_an_exported_split_is_the_run_that_made_it(tmp_path, capsys):
    args = ["partition.alpha=0.2", "seed=4"]
    split_main([*args, "num_clients=4", "--out", str(tmp_path / "split.json")])
    assert "wrote the dirichlet split of digits for 4 clients" in capsys.readouterr().out
    made = _run(tmp_path, "made", *args)
    replayed = _run(
        tmp_path, "replayed", *args, "partition=file", f"partition.path={tmp_path / 'split.json'}"
    )
    assert replayed == made
