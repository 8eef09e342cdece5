"""Datasets (embedded digits, idx reader, offline errors) and model shapes."""

import dataclasses
import gzip
import struct

import numpy as np
import pytest
import torch

from fedwsa.data import DEBIAN_FMNIST, DatasetUnavailable, check_labels, load_dataset, read_idx
from fedwsa.models import build_model


def test_digits_embedded():
    ds = load_dataset("digits")
    assert ds.x_train.shape == (1437, 1, 8, 8) and ds.x_test.shape == (360, 1, 8, 8)
    assert ds.input_shape == (1, 8, 8) and ds.num_classes == 10
    assert load_dataset("digits") is ds  # loaded once per process


def _idx(path, arr, truncate=0):
    header = bytes([0, 0, 8, arr.ndim]) + b"".join(struct.pack(">i", d) for d in arr.shape)
    data = header + arr.astype(np.uint8).tobytes()
    with gzip.open(path, "wb") as f:
        f.write(data[: len(data) - truncate])


def test_read_idx_and_truncation(tmp_path):
    arr = np.arange(24).reshape(2, 3, 4)
    _idx(tmp_path / "ok.gz", arr)
    np.testing.assert_array_equal(read_idx(tmp_path / "ok.gz"), arr)
    _idx(tmp_path / "short.gz", arr, truncate=5)
    with pytest.raises(DatasetUnavailable, match="truncated"):
        read_idx(tmp_path / "short.gz")
    (tmp_path / "junk.gz").write_bytes(b"not gzip at all")
    with pytest.raises(DatasetUnavailable):
        read_idx(tmp_path / "junk.gz")


def test_missing_torchvision_dataset_says_where(tmp_path):
    with pytest.raises(DatasetUnavailable) as e:
        load_dataset("cifar10", str(tmp_path), False)
    assert str(tmp_path) in str(e.value) and "dataset.download=false" in str(e.value)


@pytest.mark.skipif(not DEBIAN_FMNIST.exists(), reason="apt-get install dataset-fashion-mnist")
def test_fmnist_from_debian():
    ds = load_dataset("fmnist")
    assert ds.x_train.shape == (60000, 1, 28, 28) and ds.x_test.shape == (10000, 1, 28, 28)
    assert torch.bincount(ds.y_train).tolist() == [6000] * 10
    assert abs(ds.x_train.mean().item()) < 0.01  # normalised with the train statistics


@pytest.mark.parametrize(
    ("name", "shape", "classes"),
    [("mlp", (1, 8, 8), 10), ("cnn", (1, 28, 28), 10), ("cnn", (3, 32, 32), 10), ("vgg", (3, 32, 32), 100)],
)
def test_model_shapes(name, shape, classes):
    model = build_model(name, shape, classes)
    assert model(torch.zeros(2, *shape)).shape == (2, classes)


def test_niid_bench_cnn_sizes():
    model = build_model("cnn", (1, 28, 28), 10)
    sizes = [tuple(p.shape) for p in model.parameters() if p.ndim >= 2]
    assert sizes == [(6, 1, 5, 5), (16, 6, 5, 5), (120, 256), (84, 120), (10, 84)]
    with pytest.raises(ValueError):
        build_model("vgg", (1, 28, 28), 10)


def test_labels_outside_num_classes_are_refused():
    ds = load_dataset("digits")
    bad = dataclasses.replace(ds, y_test=ds.y_test.clone().fill_(12))
    with pytest.raises(DatasetUnavailable, match=r"test labels span \[12, 12\], outside \[0, 9\]"):
        check_labels(bad)
    assert check_labels(ds) is ds


def test_corrupted_torchvision_files_are_a_clear_error(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                 "t10k-labels-idx1-ubyte"):  # fmt: skip
        (raw / name).write_bytes(b"\x00\x00\x08\x03junk")
    with pytest.raises(DatasetUnavailable, match="dataset 'mnist'"):
        load_dataset("mnist", str(tmp_path), False)
    cifar = tmp_path / "cifar-10-batches-py"
    cifar.mkdir()
    for name in ("data_batch_1", "test_batch", "batches.meta"):
        (cifar / name).write_bytes(b"not a pickle")
    with pytest.raises(DatasetUnavailable, match="dataset 'cifar10'"):
        load_dataset("cifar10", str(tmp_path), False)


@pytest.mark.parametrize("name", ["vgg11", "resnet18"])
@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)])
def test_paper_scale_models_take_one_and_three_channels_without_batchnorm(name, shape):
    torch.manual_seed(0)
    model = build_model(name, shape, 10)
    assert model(torch.randn(2, *shape)).shape == (2, 10)
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())
    if name == "resnet18":  # GroupNorm instead; CIFAR stem: a 3x3, stride-1 first conv, no max-pool
        assert any(isinstance(m, torch.nn.GroupNorm) for m in model.modules())
        assert model.stem[0].kernel_size == (3, 3) and model.stem[0].stride == (1, 1)
        assert not any(isinstance(m, torch.nn.MaxPool2d) for m in model.modules())


def test_vgg11_pads_28x28_inputs_to_32x32_with_zeros():
    torch.manual_seed(0)
    model = build_model("vgg11", (1, 28, 28), 10).eval()
    x = torch.randn(2, 1, 28, 28)
    padded = torch.zeros(2, 1, 32, 32)
    padded[:, :, 2:30, 2:30] = x
    torch.testing.assert_close(model(x), model(padded), rtol=0, atol=0)


@pytest.mark.parametrize(
    ("name", "shape", "widths"),
    [
        ("vgg", (3, 32, 32), [32, 32, 64, 64, 128, 128]),
        ("vgg11", (1, 28, 28), [64, 128, 256, 256, 512, 512, 512, 512]),
    ],
)
def test_vggs_start_convs_with_he_init_so_the_gradient_reaches_the_first_conv(name, shape, widths):
    torch.manual_seed(0)
    model = build_model(name, shape, 10)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    # std sqrt(2 / (3 * 3 * c_out)), by hand; PyTorch's default, 1 / sqrt(3 * 3 * 3 * c_in), would
    # give vgg11 0.192, 0.024, 0.017, ... and vgg 0.111, 0.034, 0.034, ...
    want = {32: 0.08333, 64: 0.05893, 128: 0.04167, 256: 0.02946, 512: 0.02083}
    assert [c.out_channels for c in convs] == widths
    for conv in convs:
        assert conv.weight.std().item() == pytest.approx(want[conv.out_channels], rel=0.1)
        assert not conv.bias.any()
    linear = model.classifier[0]  # PyTorch's default kept: uniform, bound 1 / sqrt(fan_in)
    assert linear.weight.abs().max().item() <= 1 / linear.in_features**0.5
    x, y = torch.randn(64, *shape), torch.arange(64) % 10
    torch.nn.functional.cross_entropy(model(x), y).backward()
    first = convs[0].weight
    # vgg11 about 5e-3, vgg 3e-2 with this init; 7e-6 and 3e-4 with PyTorch's default
    assert first.grad.norm() / first.norm() > 1e-3


def test_inputs_a_model_cannot_take_are_one_line_errors():
    with pytest.raises(ValueError, match=r"'vgg11' needs inputs of 28x28 to 32x32 .* got 8x8"):
        build_model("vgg11", (1, 8, 8), 10)
    with pytest.raises(ValueError, match=r"'resnet18' needs inputs of at least 8x8, got 4x4"):
        build_model("resnet18", (1, 4, 4), 10)
