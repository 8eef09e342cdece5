"""The one ClientApp's train handler on a constructed Message."""

import dataclasses

import numpy as np
import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MessageType, RecordDict

from clients.client_app import query, train
from fedwsa.run.client import local_round, new_model
from fedwsa.run.config import ExperimentConfig, StrategyConfig
from fedwsa.run.wire import TrainSettings, decode_reply, encode_train
from fedwsa.wsa import model_scope, scoped_names

CFG = ExperimentConfig(
    num_clients=3, out_dir="/tmp/unused", strategy=StrategyConfig(name="fedwsa", wsa_lambda=0.1)
)


def _context(pid):
    return Context(run_id=1, node_id=5, node_config={"partition-id": pid, "num-partitions": 3},
                   state=RecordDict(), run_config={"fedwsa-config": CFG.to_json()})  # fmt: skip


def _settings(model, **kw):
    names = scoped_names(model)
    return TrainSettings(server_round=2, lr=0.05, epochs=1, batch_size=16, momentum=0.9,
                         target=model_scope(model, names), **kw)  # fmt: skip


def test_train_handler_replies_with_arrays_metrics_and_scope():
    model = new_model(CFG)
    settings = _settings(model, wsa_lambda=0.1)
    content = RecordDict(
        {"arrays": ArrayRecord(model.state_dict()), "config": ConfigRecord(encode_train(settings))}
    )
    msg = Message(content, dst_node_id=5, message_type=MessageType.TRAIN)
    reply = train(msg, _context(1))
    assert set(reply.content.keys()) == {"arrays", "metrics"}
    r = decode_reply(reply.content["metrics"])
    assert r.partition_id == 1 and r.num_examples > 0 and np.isfinite(r.train_loss)
    assert r.scope.shape == (len(scoped_names(model)), 2)
    new = reply.content["arrays"].to_torch_state_dict()
    assert set(new) == set(model.state_dict())
    assert not torch.equal(new["net.1.weight"], model.state_dict()["net.1.weight"])
    # the same round of the same client is reproducible to the bit
    again, _ = local_round(CFG, 1, model.state_dict(), settings)
    assert all(torch.equal(new[k], again[k]) for k in new)


def test_query_reports_partition_id():
    reply = query(Message(RecordDict(), dst_node_id=5, message_type=MessageType.QUERY), _context(2))
    assert reply.content["config"]["partition-id"] == 2


def test_fedavg_settings_are_plain_training():
    cfg = dataclasses.replace(CFG, strategy=StrategyConfig(name="fedavg"))
    model = new_model(cfg)
    plain = TrainSettings(server_round=1, lr=0.05, epochs=1, batch_size=16)
    a, _ = local_round(cfg, 0, model.state_dict(), plain)
    b, _ = local_round(cfg, 0, model.state_dict(), dataclasses.replace(plain, target=np.zeros((2, 2))))
    assert all(torch.equal(a[k], b[k]) for k in a)  # a target without lambda changes nothing
