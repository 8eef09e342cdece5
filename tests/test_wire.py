"""Wire keys: what the server sends and the client replies survives a round trip."""

import numpy as np
import pytest
from flwr.app import ConfigRecord, MetricRecord

from fedwsa.fedprox import PROXIMAL_MU
from fedwsa.regularizers import build_regularizer
from fedwsa.run.wire import (
    TrainReply,
    TrainSettings,
    check_reply,
    decode_reply,
    decode_train,
    encode_reply,
    encode_train,
)  # fmt: skip
from fedwsa.wsa import TARGET_MU, TARGET_SIGMA, WSA, decode_scope, encode_wsa


def test_train_settings_round_trip_through_configrecord():
    target = np.array([[0.1, 0.2], [-0.3, 0.4]])
    knobs = encode_wsa(0.5, "w2", True, target, "per_weight")
    s = TrainSettings(server_round=3, lr=0.1, epochs=2, local_steps=7, batch_size=16, momentum=0.9,
                      weight_decay=1e-5, knobs=knobs)  # fmt: skip
    back = decode_train(ConfigRecord(encode_train(s)))
    assert back == s
    np.testing.assert_array_equal(decode_scope(back.knobs, TARGET_MU, TARGET_SIGMA), target)
    assert decode_train(encode_train(TrainSettings(1, 0.1, 1, 8))).knobs == {}
    assert decode_train({**encode_train(s), "x": 1}, ignore=frozenset({"x"})) == s


def test_strategy_knobs_are_the_strategies_own_and_absent_means_fedavg():
    from fedwsa.models import MLP

    model = MLP(4, 2, hidden=3)
    base = encode_train(TrainSettings(2, 0.1, 1, 8))
    assert build_regularizer(model, decode_train(base).knobs) is None  # no strategy key: plain SGD
    prox = build_regularizer(model, decode_train({**base, PROXIMAL_MU: 0.3}).knobs)  # Flower's FedProx key
    assert prox is not None and prox.mu == 0.3  # type: ignore[attr-defined]
    target = np.ones((2, 2))
    wsa = build_regularizer(model, decode_train({**base, **encode_wsa(2.0, "kl", False, target)}).knobs)
    assert isinstance(wsa, WSA) and wsa.lam == 2.0 and wsa.names == ["net.1.weight", "net.3.weight"]


def test_reply_round_trip_through_metricrecord():
    back = decode_reply(MetricRecord(encode_reply(TrainReply(num_examples=42, train_loss=0.25))))
    assert (back.num_examples, back.train_loss) == (42, 0.25)


def _good():
    arrays = {"w": np.ones((2, 3), np.float32), "b": np.zeros(2, np.float32)}
    return arrays, encode_reply(TrainReply(10, 0.5))


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
    elif kind == "more_examples":
        metrics["num-examples"] = 11
    elif kind == "fractional_examples":
        metrics["num-examples"] = 10.5
    elif kind == "nan_loss":
        metrics["train-loss"] = float("nan")
    elif kind == "scope":  # what the server computes itself is not accepted from a client
        metrics["scope-sigma"] = [-1.0]
    elif kind == "no_loss":
        del metrics["train-loss"]
    return arrays, metrics


@pytest.mark.parametrize(
    ("kind", "words"),
    [("nan", "NaN"), ("inf", "NaN or Inf"), ("shape", "shape"), ("count", "do not match"),
     ("missing", "do not match"), ("zero_examples", "num-examples is 0, the client's partition holds 10"),
     ("more_examples", "num-examples is 11"), ("fractional_examples", "not a whole number"),
     ("nan_loss", "not a finite number"), ("scope", "extra ['scope-sigma']"),
     ("no_loss", "missing ['train-loss']")],
)  # fmt: skip
def test_check_reply_rejects_each_fault(kind, words):
    assert check_reply(*_good(), SHAPES, 10) == TrainReply(10, 0.5)
    reason = check_reply(*_bad(kind), SHAPES, 10)
    assert isinstance(reason, str) and words in reason, reason
