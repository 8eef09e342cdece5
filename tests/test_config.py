"""Config validation (one line naming the key) and the JSON round trip."""

import dataclasses

import pytest

from fedwsa.run.config import ConfigError, ExperimentConfig, from_dict

GOOD = dataclasses.asdict(ExperimentConfig(out_dir="/tmp/x"))


def _with(path, value):
    d = {k: (dict(v) if isinstance(v, dict) else v) for k, v in GOOD.items()}
    *parents, last = path.split(".")
    node = d
    for p in parents:
        node = node[p]
    node[last] = value
    return d


BAD = [
    ("partition.alpha", 0.0), ("partition.alpha", -1), ("fraction_train", 0.0),
    ("fraction_train", 1.5), ("num_clients", 0), ("num_clients", 500), ("num_rounds", 0),
    ("epochs", 0), ("batch_size", -3), ("lr", 0), ("momentum", 1.0), ("weight_decay", -1e-4),
    ("strategy.name", "fedfoo"), ("dataset.name", "imagenet"), ("model.name", "resnet"),
    ("partition.kind", "zipf"), ("strategy.distance", "l1"), ("strategy.fusion", "max"),
    ("strategy.wsa_lambda", -0.1), ("strategy.proximal_mu", -1.0), ("seed", -1),
    ("seeds.sampling", -2), ("lr", "fast"), ("num_clients", 2.5), ("verbose", "yes"),
    ("model.name", "cnn"),  # digits are 8x8: too small for the NIID-Bench CNN
    ("partition.min_size", 0), ("client_cpus", 0), ("strategy.nope", 1), ("local_steps", -1),
    ("model.name", "vgg11"),  # digits are 8x8: VGG-11 takes 28x28 to 32x32
    ("device", "gpu"), ("device", "cuda:x"), ("precision", "fp16"), ("client_gpus", -0.5),
]  # fmt: skip


@pytest.mark.parametrize(("key", "value"), BAD)
def test_bad_value_names_key(key, value):
    with pytest.raises(ConfigError) as e:
        from_dict(_with(key, value))
    assert e.value.key == key
    assert "\n" not in str(e.value)


def test_algorithm_knob_on_wrong_strategy():
    d = _with("strategy.name", "fedavg")
    d["strategy"]["proximal_mu"] = 0.1
    with pytest.raises(ConfigError, match="strategy=fedprox"):
        from_dict(d)


def test_round_trip_and_defaults():
    cfg = from_dict(GOOD)
    assert ExperimentConfig.from_json(cfg.to_json()) == cfg
    assert hash(cfg) == hash(ExperimentConfig.from_json(cfg.to_json()))
    assert cfg.sample_size == 5
    assert dataclasses.replace(cfg, fraction_train=0.3).sample_size == 1
