"""The one ClientApp's train handler on a constructed Message."""

import dataclasses

import numpy as np
import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MessageType, RecordDict

import fedwsa.run.factory as factory_module
from clients.client_app import query, train
from fedwsa.data import Dataset
from fedwsa.fedprox import PROXIMAL_MU
from fedwsa.run.config import ExperimentConfig, StrategyConfig
from fedwsa.run.factory import client_data, experiment_data, new_model, partitions, release_data
from fedwsa.run.local_round import local_round, train_settings
from fedwsa.run.wire import TrainSettings, decode_reply, decode_train, encode_train
from fedwsa.wsa import encode_wsa, model_scope, scoped_names
from strategies.registry import build_strategy

CFG = ExperimentConfig(
    num_clients=3, out_dir="/tmp/unused", strategy=StrategyConfig("fedwsa", wsa_lambda=0.1)
)


def _context(pid):
    return Context(run_id=1, node_id=5, node_config={"partition-id": pid, "num-partitions": 3},
                   state=RecordDict(), run_config={"fedwsa-config": CFG.to_json()})  # fmt: skip


def _settings(model):
    knobs = encode_wsa(0.1, "kl", False, model_scope(model, scoped_names(model)))
    return TrainSettings(server_round=2, lr=0.05, epochs=1, batch_size=16, momentum=0.9, knobs=knobs)


def test_train_handler_replies_with_arrays_and_metrics():
    model = new_model(CFG)
    settings = _settings(model)
    config = encode_train(settings)
    content = RecordDict({"arrays": ArrayRecord(model.state_dict()), "config": ConfigRecord(config)})
    msg = Message(content, dst_node_id=5, message_type=MessageType.TRAIN)
    reply = train(msg, _context(1))
    assert set(reply.content.keys()) == {"arrays", "metrics", "where"}
    assert reply.content["where"]["ray-node"] == ""  # not in a Ray actor here
    r = decode_reply(reply.content["metrics"])  # exactly the reply's keys: no scope, no partition id
    assert r.num_examples == len(partitions(CFG)[1]) and np.isfinite(r.train_loss)
    new = reply.content["arrays"].to_torch_state_dict()
    assert set(new) == set(model.state_dict())
    assert not torch.equal(new["net.1.weight"], model.state_dict()["net.1.weight"])
    # the same round of the same client is reproducible to the bit
    again, _ = local_round(CFG, 1, model.state_dict(), settings)
    assert all(torch.equal(new[k], again[k]) for k in new)


def test_fedprox_mu_sent_by_the_strategy_reaches_the_client():
    """Flower's FedProx puts its mu into the round's config; the client trains with it."""
    cfg = dataclasses.replace(CFG, strategy=StrategyConfig(name="fedprox", proximal_mu=0.5))
    model = new_model(cfg)
    strategy = build_strategy(cfg, model, scoped_names(model))

    class OneNode:
        def get_node_ids(self):
            return [5]

    base = ConfigRecord(encode_train(train_settings(cfg, 1)))
    [msg] = strategy.configure_train(1, ArrayRecord(model.state_dict()), base, OneNode())
    assert decode_train(msg.content["config"]).knobs[PROXIMAL_MU] == 0.5
    got = train(msg, _context(0)).content["arrays"].to_torch_state_dict()
    expected, _ = local_round(cfg, 0, model.state_dict(), train_settings(cfg, 1, {PROXIMAL_MU: 0.5}))
    without, _ = local_round(cfg, 0, model.state_dict(), train_settings(cfg, 1))
    assert all(torch.equal(got[k], expected[k]) for k in got)
    assert not all(torch.equal(got[k], without[k]) for k in got)


def test_query_reports_partition_id():
    reply = query(Message(RecordDict(), dst_node_id=5, message_type=MessageType.QUERY), _context(2))
    assert reply.content["config"]["partition-id"] == 2


def test_fedavg_settings_are_plain_training():
    cfg = dataclasses.replace(CFG, strategy=StrategyConfig(name="fedavg"))
    model = new_model(cfg)
    plain = TrainSettings(server_round=1, lr=0.05, epochs=1, batch_size=16)
    a, _ = local_round(cfg, 0, model.state_dict(), plain)
    zero = encode_wsa(0.0, "kl", False, np.zeros((2, 2)))
    b, _ = local_round(cfg, 0, model.state_dict(), dataclasses.replace(plain, knobs=zero))
    assert all(torch.equal(a[k], b[k]) for k in a)  # a target without lambda changes nothing


def test_the_validation_hold_out_never_reaches_client_data(monkeypatch):
    """With ``validation > 0`` the server evaluates on held-out training samples: no client
    may train on any of them. Each sample's pixels are its index, so they can be traced."""
    n = 400
    x = torch.arange(n, dtype=torch.float32).reshape(n, 1, 1, 1).expand(n, 1, 8, 8).contiguous()
    y = torch.arange(n) % 10
    fake = Dataset("digits", x, y, x[:5], y[:5], 10, "indices")
    monkeypatch.setattr(factory_module, "load_dataset", lambda *a: fake)
    cfg = dataclasses.replace(CFG, validation=0.2, num_clients=4)
    release_data()
    try:
        held_out = set(experiment_data(cfg).x_test[:, 0, 0, 0].int().tolist())
        trained = set()
        for pid in range(cfg.num_clients):
            trained |= set(client_data(cfg, pid)[0][:, 0, 0, 0].int().tolist())
    finally:
        release_data()
    assert len(held_out) == 80 and not held_out & trained
    assert held_out | trained == set(range(n))  # the rest is all used


def test_the_run_config_s_experiment_wins_over_one_in_the_message():
    """A message's experiment is taken only by a run whose config names none (a sweep's
    Flower run); elsewhere (a deployment) the run's own experiment is trained, whatever the
    message says."""
    model = new_model(CFG)
    other = dataclasses.replace(CFG, num_clients=4)  # another split: partition 1 holds other data
    config = {**encode_train(_settings(model)), "experiment": other.to_json()}
    content = RecordDict({"arrays": ArrayRecord(model.state_dict()), "config": ConfigRecord(config)})
    msg = Message(content, dst_node_id=5, message_type=MessageType.TRAIN)
    train_config = ConfigRecord(encode_train(_settings(model)))
    plain = RecordDict({"arrays": ArrayRecord(model.state_dict()), "config": train_config})
    ours = train(msg, _context(1)).content["arrays"].to_torch_state_dict()
    expected = train(Message(plain, dst_node_id=5, message_type=MessageType.TRAIN), _context(1))
    assert all(torch.equal(ours[k], v) for k, v in expected.content["arrays"].to_torch_state_dict().items())
    empty = Context(run_id=1, node_id=5, node_config={"partition-id": 1, "num-partitions": 3},
                    state=RecordDict(), run_config={})  # fmt: skip
    theirs = train(msg, empty).content["arrays"].to_torch_state_dict()
    assert not all(torch.equal(theirs[k], v) for k, v in ours.items())  # the message's split trained
