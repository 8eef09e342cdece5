"""The round loop's reply check (strategies/replies.py) on constructed replies: no simulation."""

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, Error, Message, MessageType, MetricRecord, RecordDict

from fedwsa.run.wire import TrainReply, encode_reply
from strategies.replies import clip, screen
from tests.faults import KINDS, InjectedFault, inject

SHAPES = {"w": (1, 2), "b": (1,)}
SIZES = [2, 3, 4]
NODE = {100: 0, 107: 1, 114: 2}  # the server's own record: node id -> partition id


def _reply(pid, w=(1.0, 3.0), n=None):
    arrays = ArrayRecord({"w": Array(np.array([w], np.float32)), "b": Array(np.zeros(1, np.float32))})
    metrics = MetricRecord(encode_reply(TrainReply(SIZES[pid] if n is None else n, 0.5)))
    where = ConfigRecord({"ray-node": ""})
    return Message(RecordDict({"arrays": arrays, "metrics": metrics, "where": where}), reply_to=_sent(pid))


def _sent(pid):
    return Message(RecordDict(), dst_node_id=100 + 7 * pid, message_type=MessageType.TRAIN)


def _screen(replies):
    return screen(replies, lambda r: NODE.get(r.metadata.src_node_id, -1), SHAPES, SIZES)


def test_sound_replies_are_decoded_once_into_updates():
    updates, rejected = _screen([_reply(0), _reply(2)])
    assert rejected == {} and [u.partition_id for u in updates] == [0, 2]
    assert [u.num_examples for u in updates] == [2, 4] and updates[0].train_loss == 0.5
    assert [u.node for u in updates] == ["100", "114"]  # no Ray node: the server's node ids
    np.testing.assert_array_equal(updates[1].arrays["w"], [[1.0, 3.0]])


@pytest.mark.parametrize("kind", [k for k in KINDS if k != "raise"])
def test_every_injected_fault_is_rejected_with_a_reason(kind):
    updates, rejected = _screen([_reply(0), inject(f"1:{kind}", 1, _reply(1))])
    assert [u.partition_id for u in updates] == [0]
    assert list(rejected) == [1] and rejected[1].startswith("rejected by the server: ")


def test_a_metric_record_under_another_name_is_rejected_not_a_crash():
    """main accepted it (any one MetricRecord) and FedWSA's aggregation then raised KeyError."""
    _, rejected = _screen([inject("1:renamed_metrics", 1, _reply(1))])
    assert "expected the records" in rejected[1] and "'stats': 'MetricRecord'" in rejected[1]


def test_a_client_cannot_choose_its_weight():
    _, rejected = _screen([inject("1:more_examples", 1, _reply(1))])
    assert "num-examples is 30, the client's partition holds 3" in rejected[1]


def test_error_replies_become_reasons():
    failed = Message(Error(code=0, reason="Exception ... Message: out of memory"), reply_to=_sent(1))
    updates, rejected = _screen([failed])
    assert updates == [] and rejected == {1: "out of memory"}
    with pytest.raises(InjectedFault):
        inject("all:raise", 0, _reply(0))


def test_clip_rewrites_the_message_of_a_clipped_update():
    base = {"w": np.zeros((1, 2), np.float32), "b": np.zeros(1, np.float32)}
    updates, _ = _screen([_reply(0, (3.0, 4.0)), _reply(1, (0.0, 1.0)), _reply(2, (0.0, 2.0))])
    clipped, scales = clip(updates, base, factor=1.5)  # norms 5, 1, 2: limit 3
    assert scales == [pytest.approx(0.6), 1.0, 1.0]
    np.testing.assert_allclose(clipped[0].arrays["w"], [[1.8, 2.4]], rtol=1e-6)
    np.testing.assert_allclose(clipped[0].message.content["arrays"]["w"].numpy(), [[1.8, 2.4]], rtol=1e-6)
    assert clipped[1] is updates[1]


def test_what_the_fuzzer_found_is_rejected_with_a_reason():
    """tests/test_fuzz.py found these: an infinite example count crashed the server
    (OverflowError), and an error without a message was logged as nothing."""
    _, rejected = _screen([_reply(1, n=float("inf"))])
    assert rejected == {
        1: "rejected by the server: malformed metrics (num-examples is inf, not a whole number)"
    }
    _, rejected = _screen([Message(Error(code=7, reason=""), reply_to=_sent(1))])
    assert rejected == {1: "an error reply without a message (code 7)"}
