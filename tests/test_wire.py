"""Wire keys: what the server sends and the client replies survives a round trip."""

import numpy as np
import pytest
from flwr.app import ConfigRecord, MetricRecord

from fedwsa.run.wire import (
    TrainReply,
    TrainSettings,
    check_reply,
    decode_reply,
    decode_train,
    encode_reply,
    encode_train,
)  # fmt: skip


def test_train_settings_round_trip_through_configrecord():
    s = TrainSettings(server_round=3, lr=0.1, epochs=2, local_steps=7, batch_size=16, momentum=0.9,
                      weight_decay=1e-5, proximal_mu=0.01, wsa_lambda=0.5, wsa_distance="w2",
                      wsa_scope_all=True, target=np.array([[0.1, 0.2], [-0.3, 0.4]]))  # fmt: skip
    back = decode_train(ConfigRecord(encode_train(s)))
    np.testing.assert_array_equal(back.target, s.target)
    assert back == TrainSettings(**{**s.__dict__, "target": back.target})
    assert decode_train(encode_train(TrainSettings(1, 0.1, 1, 8))).target is None


def test_reply_round_trip_through_metricrecord():
    r = TrainReply(num_examples=42, train_loss=0.25, scope=np.array([[0.0, 1.0], [2.0, 3.0]]), partition_id=7)
    back = decode_reply(MetricRecord(encode_reply(r)))
    assert (back.num_examples, back.train_loss, back.partition_id) == (42, 0.25, 7)
    np.testing.assert_array_equal(back.scope, r.scope)


def _good():
    arrays = {"w": np.ones((2, 3), np.float32), "b": np.zeros(2, np.float32)}
    metrics = encode_reply(TrainReply(10, 0.5, np.array([[0.0, 1.0]]), 0))
    return arrays, metrics


SHAPES = {"w": (2, 3), "b": (2,)}


def _bad(kind):
    arrays, metrics = _good()
    if kind == "nan":
        arrays["w"][0, 0] = np.nan
    elif kind == "inf":
        arrays["b"][1] = np.inf
    elif kind == "shape":
        arrays["w"] = np.ones((3, 2), np.float32)
    elif kind == "count":
        arrays["extra"] = np.ones(1, np.float32)
    elif kind == "missing":
        del arrays["b"]
    elif kind == "zero_examples":
        metrics["num-examples"] = 0
    elif kind == "negative_examples":
        metrics["num-examples"] = -5
    elif kind == "scope_nan":
        metrics["scope-sigma"] = [float("nan")]
    elif kind == "scope_layers":
        metrics["scope-mu"], metrics["scope-sigma"] = [0.0, 0.0], [1.0, 1.0]
    elif kind == "no_scope":
        del metrics["scope-mu"]
    return arrays, metrics


@pytest.mark.parametrize(
    ("kind", "words"),
    [("nan", "NaN"), ("inf", "NaN or Inf"), ("shape", "shape"), ("count", "do not match"),
     ("missing", "do not match"), ("zero_examples", "num-examples is 0"),
     ("negative_examples", "num-examples is -5"), ("scope_nan", "NaN"), ("scope_layers", "2 layers"),
     ("no_scope", "malformed")],
)  # fmt: skip
def test_check_reply_rejects_each_fault(kind, words):
    assert check_reply(*_good(), SHAPES, 1) is None
    reason = check_reply(*_bad(kind), SHAPES, 1)
    assert reason is not None and words in reason
