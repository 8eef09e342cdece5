"""FedWSA strategy and PartitionGrid on constructed messages: no simulation."""

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, Error, Message, MessageType, MetricRecord, RecordDict

from fedwsa.run.wire import TARGET_MU, TARGET_SIGMA, TrainReply, decode_scope, encode_reply
from fedwsa.wsa import array_scope, fuse_scopes
from strategies.fedwsa import FedWSA
from strategies.grid import PartitionGrid

NAMES = ["w"]


def _reply(w, bias, n, scope, pid):
    arrays = ArrayRecord(
        {"w": Array(np.asarray(w, dtype=np.float32)), "b": Array(np.asarray(bias, dtype=np.float32))}
    )
    metrics = MetricRecord(encode_reply(TrainReply(n, 0.5, np.asarray(scope), pid)))
    return Message(
        RecordDict({"arrays": arrays, "metrics": metrics}), dst_node_id=0, message_type=MessageType.TRAIN
    )


def _strategy(**kw):
    return FedWSA(initial_target=np.array([[0.0, 1.0]]), names=NAMES, fraction_evaluate=0.0, **kw)


def test_aggregate_averages_and_fuses_mean():
    s = _strategy(fusion="mean")
    replies = [
        _reply([[1.0, 3.0]], [0.0], 1, [[2.0, 1.0]], 0),
        _reply([[5.0, 7.0]], [4.0], 3, [[6.0, 3.0]], 1),
    ]
    arrays, _ = s.aggregate_train(1, replies)
    # weights 1/4, 3/4: w = [4, 6], b = 3
    np.testing.assert_allclose(arrays["w"].numpy(), [[4.0, 6.0]])
    np.testing.assert_allclose(arrays["b"].numpy(), [3.0])
    # mean fusion of the reported scopes: mu = 0.5 + 4.5 = 5, sigma = 0.25 + 2.25 = 2.5
    np.testing.assert_allclose(s.target, [[5.0, 2.5]])


def test_aggregate_mixture_global_and_align():
    replies = [
        _reply([[1.0, 3.0]], [0.0], 1, [[2.0, 1.0]], 0),
        _reply([[5.0, 7.0]], [4.0], 3, [[6.0, 3.0]], 1),
    ]
    s = _strategy(fusion="mixture")
    s.aggregate_train(1, replies)
    np.testing.assert_allclose(s.target, fuse_scopes([[[2.0, 1.0]], [[6.0, 3.0]]], [1, 3], "mixture"))
    g = _strategy(fusion="global")
    g.aggregate_train(1, replies)
    np.testing.assert_allclose(g.target, [array_scope(np.array([4.0, 6.0]))])  # scope of the average
    a = _strategy(fusion="mean", align_global=True)
    arrays, _ = a.aggregate_train(1, replies)
    # the averaged w = [4, 6] rescaled to (5, 2.5): 5 + (w - 5) * 2.5 / 1 = [2.5, 7.5]
    np.testing.assert_allclose(arrays["w"].numpy(), [[2.5, 7.5]], rtol=1e-6)
    np.testing.assert_allclose(arrays["b"].numpy(), [3.0])  # not scoped: untouched


def test_error_replies_are_ignored():
    s = _strategy()
    good = _reply([[1.0, 3.0]], [0.0], 2, [[2.0, 1.0]], 0)
    failed = Message(
        Error(code=0, reason="client crashed"), reply_to=_reply([[0.0]], [0.0], 1, [[0.0, 1.0]], 1)
    )
    arrays, _ = s.aggregate_train(1, [good, failed])
    np.testing.assert_allclose(arrays["w"].numpy(), [[1.0, 3.0]])
    np.testing.assert_allclose(s.target, [[2.0, 1.0]])


def test_configure_train_sends_target():
    class G:
        def get_node_ids(self):
            return [11, 12]

    s = _strategy()
    s.target = np.array([[0.25, 0.5]])
    msgs = list(
        s.configure_train(4, ArrayRecord({"w": Array(np.zeros((1, 2), np.float32))}), ConfigRecord(), G())
    )
    assert len(msgs) == 2
    cfg = msgs[0].content["config"]
    np.testing.assert_array_equal(decode_scope(cfg, TARGET_MU, TARGET_SIGMA), [[0.25, 0.5]])
    assert cfg["server-round"] == 4 and s.sent[4].tolist() == [[0.25, 0.5]]


class FakeGrid:
    """Answers partition queries; node ids are arbitrary, as Flower's are."""

    def __init__(self, n, offset):
        self.nodes = [offset + 7 * i for i in range(n)][::-1]
        self.sent = []

    def get_node_ids(self):
        return list(self.nodes)

    def send_and_receive(self, messages, *, timeout=None):
        out = []
        for m in messages:
            pid = self.nodes[::-1].index(m.metadata.dst_node_id)
            if m.metadata.message_type == MessageType.QUERY:
                content = RecordDict({"config": ConfigRecord({"partition-id": pid})})
            else:
                self.sent.append(pid)
                content = RecordDict()
            out.append(Message(content, reply_to=m))
        return out[::-1]  # arrival order differs from send order


def _rounds(offset, seed, rounds=4):
    fake = FakeGrid(10, offset)
    grid = PartitionGrid(fake, num_partitions=10, sample_size=3, seed=seed, wait_s=1)
    samples, orders = [], []
    for _ in range(rounds):
        nodes = list(grid.get_node_ids())
        assert nodes == list(grid.get_node_ids())  # stable within a round
        msgs = [Message(RecordDict(), dst_node_id=n, message_type=MessageType.TRAIN) for n in nodes]
        replies = grid.send_and_receive(msgs)
        samples.append(list(grid.sampled))
        orders.append([grid.partition_of[r.metadata.src_node_id] for r in replies])
    return samples, orders


def test_partition_grid_sampling_is_seeded_by_partition_id():
    a, order_a = _rounds(offset=1000, seed=5)
    b, _ = _rounds(offset=5, seed=5)  # other node ids, same seed: same partitions
    c, _ = _rounds(offset=1000, seed=6)
    assert a == b and a != c
    assert all(len(s) == 3 for s in a) and len({tuple(s) for s in a}) > 1
    assert all(o == sorted(o) for o in order_a)  # replies in partition-id order


def test_partition_grid_times_out_when_nodes_missing():
    fake = FakeGrid(2, 0)
    with pytest.raises(TimeoutError, match="node_wait_s"):
        PartitionGrid(fake, num_partitions=3, sample_size=3, seed=0, wait_s=0.3).get_node_ids()


class ReplyGrid(FakeGrid):
    """Train replies carry the given (arrays, scope) per partition id."""

    def __init__(self, n, content):
        super().__init__(n, 100)
        self.content = content

    def send_and_receive(self, messages, *, timeout=None):
        out = []
        for m in messages:
            if m.metadata.message_type == MessageType.QUERY:
                out += super().send_and_receive([m])
                continue
            pid = self.nodes[::-1].index(m.metadata.dst_node_id)
            r = _reply(*self.content[pid], pid)
            out.append(Message(r.content, reply_to=m))
        return out


def test_rejected_reply_never_reaches_model_or_target():
    good = ([[1.0, 3.0]], [0.0], 2, [[2.0, 1.0]])
    poisoned = ([[float("nan"), 3.0]], [0.0], 2, [[2.0, 1.0]])
    grid = PartitionGrid(ReplyGrid(2, {0: good, 1: poisoned}), 2, 2, seed=0, wait_s=1)

    def validate(msg):
        w = msg.content["arrays"]["w"].numpy()
        return None if np.isfinite(w).all() else "NaN"

    grid.validate = validate
    s = _strategy()
    msgs = list(
        s.configure_train(1, ArrayRecord({"w": Array(np.zeros((1, 2), np.float32))}), ConfigRecord(), grid)
    )
    replies = grid.send_and_receive(msgs)
    assert grid.failed == [1] and sum(r.has_error() for r in replies) == 1
    arrays, _ = s.aggregate_train(1, replies)
    np.testing.assert_allclose(arrays["w"].numpy(), [[1.0, 3.0]])  # only the good client
    np.testing.assert_allclose(s.target, [[2.0, 1.0]])


def test_round_with_too_few_good_replies_is_skipped():
    good = ([[1.0, 3.0]], [0.0], 2, [[2.0, 1.0]])
    grid = PartitionGrid(ReplyGrid(2, {0: good, 1: good}), 2, 2, seed=0, wait_s=1, min_clients=2)
    grid.validate = lambda msg: "always" if grid.partition_of[msg.metadata.src_node_id] == 1 else None
    s = _strategy()
    msgs = list(
        s.configure_train(1, ArrayRecord({"w": Array(np.zeros((1, 2), np.float32))}), ConfigRecord(), grid)
    )
    arrays, _ = s.aggregate_train(1, grid.send_and_receive(msgs))
    assert arrays is None  # nothing aggregated: the global model stays as it was
