"""Wire keys: what the server sends and the client replies survives a round trip."""

import numpy as np
from flwr.app import ConfigRecord, MetricRecord

from fedwsa.wire import TrainReply, TrainSettings, decode_reply, decode_train, encode_reply, encode_train


def test_train_settings_round_trip_through_configrecord():
    s = TrainSettings(server_round=3, lr=0.1, epochs=2, batch_size=16, momentum=0.9,
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
