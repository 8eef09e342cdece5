"""dataset=synthetic (FedProx's Synthetic(alpha, beta)): the generator's equations checked
on its own draws, determinism per (seed, client), sizes, and 100,000 clients in one run."""

import dataclasses
import json

import numpy as np
import pytest
import torch

from fedwsa.run.config import DatasetConfig, ExperimentConfig, ModelConfig, StrategyConfig, validate
from fedwsa.run.factory import client_data, experiment_data, partition_sizes
from fedwsa.synthetic import (
    CLASSES,
    EVAL_CLIENTS,
    EVAL_PER_CLIENT,
    FEATURES,
    MAX_SIZE,
    _client_model,
    client_samples,
    client_sizes,
    client_train,
)


def test_labels_are_the_argmax_of_the_clients_own_linear_model():
    w, b, _ = _client_model(7, 1.0, 1.0, seed=3)
    x, y = client_samples(7, 500, 1.0, 1.0, seed=3)
    assert x.shape == (500, FEATURES) and x.dtype == np.float32 and y.dtype == np.int64
    logits = x.astype(np.float64) @ w + b
    assert (np.argmax(logits, axis=1) == y).mean() > 0.99  # float32 rounding may flip near-ties
    assert set(np.unique(y)) <= set(range(CLASSES))


def test_input_covariance_is_diagonal_j_to_the_minus_1_2_around_the_clients_mean():
    _, _, v = _client_model(0, 0.5, 2.0, seed=1)
    x, _ = client_samples(0, 40000, 0.5, 2.0, seed=1)
    x = x.astype(np.float64)
    j = np.arange(1, FEATURES + 1)
    np.testing.assert_allclose(x.var(axis=0), j**-1.2, rtol=0.05)  # Sigma_jj = j^-1.2
    np.testing.assert_allclose(x.mean(axis=0), v, atol=4 * np.sqrt(j**-1.2 / 40000).max())
    off = np.corrcoef(x[:, :5].T) - np.eye(5)
    assert np.abs(off).max() < 0.03  # no correlation between features


@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_alpha_is_the_std_of_the_clients_model_means(alpha):
    """W_k ~ N(u_k, 1) with u_k ~ N(0, alpha): over 400 clients, the std of each client's
    mean weight is sqrt(alpha^2 + 1/600) (600 weights per client)."""
    means = np.array([_client_model(k, alpha, 0.0, seed=2)[0].mean() for k in range(400)])
    assert means.std() == pytest.approx(np.sqrt(alpha**2 + 1 / 600), rel=0.12)


@pytest.mark.parametrize("beta", [0.0, 2.0])
def test_beta_is_the_std_of_the_clients_input_means(beta):
    """v_k ~ N(B_k, 1), B_k ~ N(0, beta): std over clients of mean(v_k) = sqrt(beta^2 + 1/60)."""
    means = np.array([_client_model(k, 0.0, beta, seed=2)[2].mean() for k in range(400)])
    assert means.std() == pytest.approx(np.sqrt(beta**2 + 1 / 60), rel=0.12)


def test_sizes_follow_fedprox_capped_and_do_not_depend_on_how_many_clients():
    sizes = client_sizes(100000, seed=0)
    assert sizes.min() >= 50 and sizes.max() == MAX_SIZE  # int(lognormal(4, 2)) + 50, capped
    raw = np.random.default_rng([0, 0x5EED]).lognormal(4, 2, 100000).astype(np.int64) + 50
    np.testing.assert_array_equal(sizes, np.minimum(raw, MAX_SIZE))
    np.testing.assert_array_equal(client_sizes(10, seed=0), sizes[:10])  # client k is client k
    x0, y0 = client_train(3, 10, 1.0, 1.0, seed=0)
    x1, y1 = client_train(3, 100000, 1.0, 1.0, seed=0)
    assert len(y0) == sizes[3] and np.array_equal(x0, x1) and np.array_equal(y0, y1)
    x2, _ = client_train(4, 10, 1.0, 1.0, seed=0)
    assert not np.array_equal(x0[:10], x2[:10])
    x3, _ = client_train(3, 10, 1.0, 1.0, seed=1)
    assert not np.array_equal(x0[:10], x3[:10])


def _cfg(**kw):
    base = ExperimentConfig(dataset=DatasetConfig(name="synthetic", model="logreg"),
                            model=ModelConfig(name="logreg"), strategy=StrategyConfig(name="fedavg"),
                            num_clients=1000, lr=0.01)  # fmt: skip
    return validate(dataclasses.replace(base, **kw))


def test_experiment_data_is_the_evaluation_set_and_clients_generate_their_own():
    cfg = _cfg()
    ds = experiment_data(cfg)
    assert ds.x_train.shape == (0, 1, 1, FEATURES) and ds.input_shape == (1, 1, FEATURES)
    assert ds.x_test.shape == (EVAL_CLIENTS * EVAL_PER_CLIENT, 1, 1, FEATURES)
    val = experiment_data(dataclasses.replace(cfg, validation=0.1))
    assert not torch.equal(val.x_test, ds.x_test)  # another stream: validation is never the test set
    x, y = client_data(cfg, 5)
    assert x.shape == (partition_sizes(cfg)[5], 1, 1, FEATURES)
    xs, ys = client_train(5, 1000, 1.0, 1.0, cfg.seeds.partition)
    assert torch.equal(x.view(-1, FEATURES), torch.from_numpy(xs)) and torch.equal(y, torch.from_numpy(ys))
    other = dataclasses.replace(cfg, dataset=dataclasses.replace(cfg.dataset, alpha=0.5))
    assert other.identity() != cfg.identity()
    fm = validate(ExperimentConfig(dataset=DatasetConfig(name="fmnist")))
    assert "alpha" not in json.loads(fm.identity())["dataset"]  # only synthetic's identity has them


@pytest.mark.slow
def test_100000_clients_in_one_run(tmp_path):
    """100,000 clients, 10 per round, engine=inprocess: the pool has 10 nodes, every reply's
    example count is checked against the size the server computes, the run finishes."""
    from experiments.launch.inprocess import run_inprocess

    cfg = _cfg(num_clients=100000, fraction_train=0.0001, num_rounds=2)
    cfg = dataclasses.replace(cfg, out_dir=str(tmp_path))
    assert cfg.sample_size == 10 and cfg.node_pool == 10
    run_inprocess(cfg)
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert m["status"] == "finished"
    assert [r["num_replies"] for r in m["rounds"][1:]] == [10, 10]
    assert max(c for r in m["rounds"][1:] for c in r["clients"]) > 1000
