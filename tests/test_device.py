"""Devices, precision and determinism (fedwsa/device.py) through a client's round and the
server loop. The CUDA tests run where CUDA is, and skip with the reason elsewhere."""

import dataclasses

import pytest
import torch

from fedwsa.device import DeviceUnavailable, resolve_device
from fedwsa.run.config import ExperimentConfig, StrategyConfig, validate
from fedwsa.run.factory import client_data, new_model
from fedwsa.run.local_round import local_round, train_settings
from fedwsa.wsa import encode_wsa, model_scope, scoped_names
from strategies.rounds import run
from tests.helpers import metrics
from tests.inprocess import LocalGrid

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
CFG = validate(
    ExperimentConfig(num_clients=3, out_dir="/tmp/unused", strategy=StrategyConfig("fedwsa", wsa_lambda=1.0))
)


def _round(cfg, pid=1):
    model = new_model(cfg)
    target = model_scope(model, scoped_names(model))
    return local_round(
        cfg, pid, model.state_dict(), train_settings(cfg, 1, encode_wsa(1.0, "kl", False, target))
    )


def test_device_names_resolve_or_fail_in_one_line():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(DeviceUnavailable, match="unknown device 'gpu'"):
        resolve_device("gpu")
    if not torch.cuda.is_available():
        with pytest.raises(DeviceUnavailable, match="cuda:1: CUDA is not available on this machine"):
            resolve_device("cuda:1")


def test_bf16_autocast_trains_and_keeps_parameters_and_reply_fp32():
    fp32, _ = _round(dataclasses.replace(CFG, device="cpu"))
    bf16, reply = _round(dataclasses.replace(CFG, device="cpu", precision="bf16"))
    assert all(v.dtype == torch.float32 for v in bf16.values())
    assert any(not torch.equal(fp32[k], bf16[k]) for k in fp32)  # it did compute in bf16
    assert all(torch.allclose(fp32[k], bf16[k], atol=0.05) for k in fp32)  # and only rounded
    assert reply.peak_memory_mb == 0.0  # no CUDA allocator on the CPU


def test_deterministic_changes_nothing_on_the_cpu():
    a, _ = _round(dataclasses.replace(CFG, device="cpu"))
    b, _ = _round(dataclasses.replace(CFG, device="cpu", deterministic=True))
    torch.use_deterministic_algorithms(False)
    assert all(torch.equal(a[k], b[k]) for k in a)


@CUDA
def test_cuda_round_matches_the_cpu_to_float_rounding_and_keeps_data_on_the_gpu():
    cpu, _ = _round(dataclasses.replace(CFG, device="cpu"))
    gpu, reply = _round(dataclasses.replace(CFG, device="cuda"))
    assert all(v.device.type == "cpu" for v in gpu.values())  # what goes on the wire
    assert all(torch.allclose(cpu[k], gpu[k], atol=1e-4) for k in cpu)
    assert client_data(dataclasses.replace(CFG, device="cuda"), 1, torch.device("cuda"))[0].is_cuda
    assert reply.peak_memory_mb > 0


@CUDA
def test_deterministic_cuda_runs_are_bit_identical_and_memory_does_not_grow(tmp_path):
    rows = []
    for name in ("a", "b"):
        cfg = validate(dataclasses.replace(CFG, device="cuda", deterministic=True, num_rounds=4,
                                           out_dir=str(tmp_path / name)))  # fmt: skip
        run(LocalGrid(cfg), cfg)
        rows.append(metrics(tmp_path / name)[0])
    assert rows[0] == rows[1]
    peaks = [max(r["peak_memory_mb"]) for r in rows[0][1:]]
    assert max(peaks[1:]) <= peaks[0] * 1.05 + 1, peaks
