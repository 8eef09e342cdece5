"""The robustness table (``experiments/robustness.py``) on runs written by hand: the plan's
reading rule and FedWSA's target drift."""

from __future__ import annotations

import json
import math

import pytest

from experiments.robustness import main, reading, table


def _run(folder, acc, target=None):
    folder.mkdir(parents=True)
    rows = [{"round": 0, "test_accuracy": 0.1}, {"round": 1, "test_accuracy": acc}]
    (folder / "metrics.json").write_text(json.dumps({"status": "finished", "rounds": rows}))
    rec = {"round": 1, "global": [[0, 0.1], [0, 0.2]], "target": target}
    (folder / "scopes.json").write_text(json.dumps({"layers": ["a", "b"], "rounds": [rec]}))


def test_the_reading_rule_by_hand():
    clean = [0.80, 0.82]  # mean 0.81, sample std 0.01414
    assert reading([0.69, 0.70], clean) == "breaks"  # 0.81 - 0.695 = 0.115 > 0.10
    assert reading([0.79, 0.80], clean) == "holds"  # 1.5 pp <= max(2 x 0.0141, 0.02) = 2.83 pp
    assert reading([0.76, 0.77], clean) == "between"  # 4.5 pp: neither
    assert reading([0.70, 0.72], [0.80, 0.82]) == "between"  # exactly 10 pp is not "more than 10"


def test_the_table_and_the_target_drift(tmp_path, capsys):
    f = tmp_path / "study" / "final"
    for seed, (clean, hit) in enumerate([(0.80, 0.60), (0.82, 0.62)]):
        _run(f / "attack=none" / "fedwsa" / f"seed={seed}", clean, [[0, 0.1], [0, 0.2]])
        _run(f / "attack=scope_1" / "fedwsa" / f"seed={seed}", hit, [[0, 0.1 * math.e], [0, 0.2]])
        _run(f / "attack=none" / "fedavg" / f"seed={seed}", clean)
        _run(f / "attack=scope_1" / "fedavg" / f"seed={seed}", clean - 0.01)
    lines, data = table(tmp_path / "study")
    # drift: layer a's target sigma x e (|log e| = 1), layer b's unchanged: (1 + 0) / 2 = 0.5
    assert data["attack=scope_1/fedwsa"]["drift"] == pytest.approx([0.5, 0.5])
    assert lines[3] == "| scope_1 | 80.0 ± 1.4 holds | 61.0 ± 1.4 breaks (drift 0.500) |"
    assert main([str(tmp_path / "nothing")]) == 2
    assert "no final/attack=none" in capsys.readouterr().err
