"""Config validation (one line naming the key) and the JSON round trip."""

import dataclasses

import pytest

from fedwsa.run.config import ConfigError, ExperimentConfig, from_dict
from strategies import registry

GOOD = ExperimentConfig(out_dir="/tmp/x").as_dict()


def checked(d):
    """What the launcher checks: the core's config, then the algorithm's (strategies.registry)."""
    cfg = from_dict(d)
    registry.check(cfg)
    return cfg


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
    ("partition.kind", "zipf"), ("seed", -1),
    ("seeds.sampling", -2), ("lr", "fast"), ("num_clients", 2.5), ("verbose", "yes"),
    ("model.name", "cnn"),  # digits are 8x8: too small for the NIID-Bench CNN
    ("partition.min_size", 0), ("client_cpus", 0), ("strategy.nope", 1), ("local_steps", -1),
    ("strategy.name", ""), ("strategy.name", "my_pkg_that_is_not_there.algo"), ("strategy.x", [1]),
    ("model.name", "vgg11"),  # digits are 8x8: VGG-11 takes 28x28 to 32x32
    ("device", "gpu"), ("device", "cuda:x"), ("precision", "fp16"), ("client_gpus", -0.5),
]  # fmt: skip


@pytest.mark.parametrize(("key", "value"), BAD)
def test_bad_value_names_key(key, value):
    with pytest.raises(ConfigError) as e:
        checked(_with(key, value))
    assert e.value.key == key
    assert "\n" not in str(e.value)


ALGORITHM_BAD = [
    ("fedwsa", "distance", "l1"), ("fedwsa", "fusion", "max"), ("fedwsa", "wsa_lambda", -0.1),
    ("fedwsa", "wsa_lambda", "big"), ("fedwsa", "align_global", 1), ("fedprox", "proximal_mu", -1.0),
    ("fedavgm", "server_momentum", 1.0), ("fedadam", "tau", 0.0), ("fedyogi", "beta_2", 1.0),
    ("fedadagrad", "eta", -1.0), ("qfedavg", "q", -1.0), ("fedtrimmedavg", "beta", 0.5),
    ("krum", "num_malicious_nodes", 2),  # 5 clients per round: f = 2 needs 7
    ("multikrum", "num_nodes_to_select", 6), ("bulyan", "num_malicious_nodes", 1),  # needs 7
    ("feddyn", "alpha", 0.0),
]  # fmt: skip


@pytest.mark.parametrize(("name", "key", "value"), ALGORITHM_BAD)
def test_bad_algorithm_knob_names_key(name, key, value):
    d = _with("strategy.name", name)
    d["strategy"][key] = value
    with pytest.raises(ConfigError) as e:
        checked(d)
    assert e.value.key == f"strategy.{key}"
    assert "\n" not in str(e.value)


def test_a_knob_of_another_algorithm_is_refused():
    d = _with("strategy.name", "fedavg")
    d["strategy"]["proximal_mu"] = 0.1
    with pytest.raises(ConfigError, match=r"unknown key; known keys: none$"):
        checked(d)
    d = _with("strategy.name", "fedprox")
    d["strategy"]["wsa_lambda"] = 0.1
    with pytest.raises(ConfigError, match="unknown key; known keys: proximal_mu"):
        checked(d)


def test_per_client_state_that_cannot_fit_is_refused_before_the_run(monkeypatch):
    from fedwsa.run.factory import new_model

    cfg = from_dict(_with("strategy.name", "scaffold"))
    model = new_model(cfg)
    size = sum(p.numel() * 4 for p in model.parameters())  # one float32 copy per client
    monkeypatch.setattr(registry, "machine_memory", lambda: 2 * 5 * size - 1)  # half of it < 5 copies
    with pytest.raises(ConfigError, match=r"scaffold keeps 1 copy .* 5 clients need"):
        registry.check(cfg, model)
    monkeypatch.setattr(registry, "machine_memory", lambda: 2 * 5 * size)
    registry.check(cfg, model)
    registry.check(from_dict(_with("strategy.name", "fedavg")), model)  # keeps none


def test_round_trip_and_defaults():
    cfg = from_dict(GOOD)
    assert ExperimentConfig.from_json(cfg.to_json()) == cfg
    assert hash(cfg) == hash(ExperimentConfig.from_json(cfg.to_json()))
    assert cfg.sample_size == 5
    assert dataclasses.replace(cfg, fraction_train=0.3).sample_size == 1
