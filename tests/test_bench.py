"""The benchmarks' code paths, on small configs (no timing is asserted: they are benchmarks)."""

import json

import torch

from experiments.bench.__main__ import main


def test_gpu_benchmark_runs_its_code_and_its_plain_loop_does_the_same_training(tmp_path):
    main(["gpu", "--repeat", "1", "--out", str(tmp_path / "gpu.json")])
    doc = json.loads((tmp_path / "gpu.json").read_text())
    assert [r["precision"] for r in doc["rows"]] == ["fp32", "bf16"]
    for r in doc["rows"]:
        assert r["fedwsa_round_s"] > 0 and r["plain_round_s"] > 0
        if r["precision"] == "fp32":  # the same batches and steps: the same model, to rounding
            assert abs(r["final_accuracy_fedwsa"] - r["final_accuracy_plain"]) < 0.01
    if not torch.cuda.is_available():
        assert doc["gpu"] is None and "not measured" in doc["note"]
