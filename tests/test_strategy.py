"""FedWSA strategy and PartitionGrid on constructed messages: no simulation."""

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, Error, Message, MessageType, MetricRecord, RecordDict

from fedwsa.run.wire import TrainReply, decode_train, encode_reply
from fedwsa.wsa import (
    TARGET_MU,
    TARGET_SIGMA,
    WSA_DISTANCE,
    WSA_LAMBDA,
    array_scope,
    decode_scope,
    fuse_scopes,
)
from strategies.algorithms.fedwsa import FedWSA
from strategies.grid import PartitionGrid

NAMES = ["w"]


def _reply(w, bias, n, pid=0, **extra_metrics):
    arrays = ArrayRecord(
        {"w": Array(np.asarray(w, dtype=np.float32)), "b": Array(np.asarray(bias, dtype=np.float32))}
    )
    metrics = MetricRecord({**encode_reply(TrainReply(n, 0.5)), **extra_metrics})
    return Message(
        RecordDict({"arrays": arrays, "metrics": metrics}), dst_node_id=pid, message_type=MessageType.TRAIN
    )


def _strategy(**kw):
    return FedWSA(initial_target=np.array([[0.0, 1.0]]), names=NAMES, fraction_evaluate=0.0, **kw)


# w = [1, 3]: scope (2, 1); w = [3, 9]: scope (6, 3); weights 1/4 and 3/4
REPLIES = [(([[1.0, 3.0]], [0.0], 1),), (([[3.0, 9.0]], [4.0], 3),)]


def _replies(*claims):
    """The two replies, each with the extra metrics in ``claims`` beside its parameters."""
    claims = claims or ({}, {})
    return [_reply(*REPLIES[0][0], pid=0, **claims[0]), _reply(*REPLIES[1][0], pid=1, **claims[1])]


def test_aggregate_averages_and_fuses_the_scopes_of_the_parameters():
    s = _strategy(fusion="mean")
    arrays, _ = s.aggregate_train(1, _replies())
    # w = [1/4 + 9/4, 3/4 + 27/4] = [2.5, 7.5], b = 3
    np.testing.assert_allclose(arrays["w"].numpy(), [[2.5, 7.5]])
    np.testing.assert_allclose(arrays["b"].numpy(), [3.0])
    # mean fusion of the scopes computed from w: mu = 0.5 + 4.5 = 5, sigma = 0.25 + 2.25 = 2.5
    np.testing.assert_allclose(s.target, [[5.0, 2.5]], rtol=1e-7)


def test_a_scope_a_client_reports_never_reaches_the_target():
    """The target is fused from the scopes of the parameters the server holds; whatever
    scope a reply claims (here sigma = -1, which main fused: sigma* = -0.125) is not read."""
    honest, lying = _strategy(fusion="mean"), _strategy(fusion="mean")
    honest.aggregate_train(1, _replies())
    claims = {"scope-mu": [2.0], "scope-sigma": [1.0]}, {"scope-mu": [0.0], "scope-sigma": [-1.0]}
    lying.aggregate_train(1, _replies(*claims))
    np.testing.assert_array_equal(lying.target, honest.target)


def test_aggregate_mixture_global_and_align():
    s = _strategy(fusion="mixture")
    s.aggregate_train(1, _replies())
    np.testing.assert_allclose(
        s.target, fuse_scopes([[[2.0, 1.0]], [[6.0, 3.0]]], [1, 3], "mixture"), rtol=1e-7
    )
    g = _strategy(fusion="global")
    g.aggregate_train(1, _replies())
    np.testing.assert_allclose(g.target, [array_scope(np.array([2.5, 7.5]))])  # scope of the average
    a = _strategy(fusion="mixture", align_global=True)
    arrays, _ = a.aggregate_train(1, _replies())
    # mixture: mu = 5, sigma^2 = 1/4 (1 + 9) + 3/4 (9 + 1) = 10; the average [2.5, 7.5] (5, 2.5)
    # rescaled: 5 + (w - 5) * sqrt(10) / 2.5 = [5 - sqrt(10), 5 + sqrt(10)]
    np.testing.assert_allclose(arrays["w"].numpy(), [[5 - 10**0.5, 5 + 10**0.5]], rtol=1e-6)
    np.testing.assert_allclose(arrays["b"].numpy(), [3.0])  # not scoped: untouched


def test_error_replies_are_ignored():
    s = _strategy()
    good = _reply([[1.0, 3.0]], [0.0], 2)
    failed = Message(Error(code=0, reason="client crashed"), reply_to=_reply([[0.0]], [0.0], 1, pid=1))
    arrays, _ = s.aggregate_train(1, [good, failed])
    np.testing.assert_allclose(arrays["w"].numpy(), [[1.0, 3.0]])
    np.testing.assert_allclose(s.target, [[2.0, 1.0]], rtol=1e-7)


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
    settings = decode_train({**cfg, "lr": 0.1, "local-epochs": 1, "local-steps": 0, "batch-size": 8,
                             "momentum": 0.0, "weight-decay": 0.0})  # fmt: skip
    assert (settings.knobs[WSA_LAMBDA], settings.knobs[WSA_DISTANCE]) == (
        1.0,
        "kl",
    )  # FedWSA sends its own knobs


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

    def push_messages(self, messages):
        self.pushed = {}
        for i, m in enumerate(messages):
            m.metadata.__dict__["_message_id"] = f"m{i}"
            self.pushed[f"m{i}"] = m
        return list(self.pushed)

    def pull_messages(self, ids):
        """The replies to two of the pending messages at a time, the later one first."""
        ready = [self.pushed.pop(i) for i in sorted(ids)[:2]]
        return self.send_and_receive(ready)


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


def test_partition_grid_reports_progress_as_replies_come_in():
    grid = PartitionGrid(FakeGrid(5, 0), num_partitions=5, sample_size=5, seed=0, wait_s=1)
    seen = []
    grid.progress = lambda done, total, elapsed: seen.append((done, total))
    msgs = [Message(RecordDict(), dst_node_id=n, message_type=MessageType.TRAIN) for n in grid.get_node_ids()]
    replies = grid.send_and_receive(msgs, timeout=10)
    assert seen == [(2, 5), (4, 5)]  # not after the last: the round's own line follows
    assert [grid.partition_of_reply(r) for r in replies] == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("synchronous", [True, False])
def test_partition_grid_never_sleeps_while_an_in_process_grid_runs_clients(monkeypatch, synchronous):
    """Replies at every pull: a grid that runs clients as it is pulled (engine=inprocess) is
    pulled again at once; Flower's grids get 5 ms between pulls."""
    import strategies.grid as grid_module

    slept = []
    monkeypatch.setattr(grid_module.time, "sleep", slept.append)
    fake = FakeGrid(9, 0)
    fake.runs_clients_on_pull = synchronous
    grid = PartitionGrid(fake, num_partitions=9, sample_size=9, seed=0, wait_s=1)
    msgs = [Message(RecordDict(), dst_node_id=n, message_type=MessageType.TRAIN) for n in grid.get_node_ids()]

    replies = grid.send_and_receive(msgs, timeout=10)

    assert len(replies) == 9
    assert slept == ([] if synchronous else [0.005] * 4)  # 5 pulls of 2, 2, 2, 2, 1 replies


def test_partition_grid_waits_5_ms_doubling_to_200_ms_after_empty_pulls(monkeypatch):
    import strategies.grid as grid_module

    slept = []
    monkeypatch.setattr(grid_module.time, "sleep", slept.append)
    fake = FakeGrid(1, 0)
    grid = PartitionGrid(fake, num_partitions=1, sample_size=1, seed=0, wait_s=1)
    msgs = [Message(RecordDict(), dst_node_id=n, message_type=MessageType.TRAIN) for n in grid.get_node_ids()]
    pull = fake.pull_messages
    calls = iter(range(100))
    monkeypatch.setattr(fake, "pull_messages", lambda ids: [] if next(calls) < 8 else pull(ids))

    grid.send_and_receive(msgs, timeout=10)

    assert slept == [0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.2, 0.2]


def test_partition_grid_times_out_when_nodes_missing():
    fake = FakeGrid(2, 0)
    with pytest.raises(TimeoutError, match="node_wait_s"):
        PartitionGrid(fake, num_partitions=3, sample_size=3, seed=0, wait_s=0.3).get_node_ids()


def test_server_app_refuses_a_run_without_the_experiment():
    """No fallback to built-in defaults: the experiment comes from the run config, or nothing runs."""
    from flwr.app import Context

    from strategies.server_app import main

    ctx = Context(run_id=1, node_id=0, node_config={}, state=RecordDict(), run_config={})
    with pytest.raises(ValueError, match="has no fedwsa-config"):
        main(None, ctx)


def test_fedwsa_moving_target_in_the_strategy():
    """The strategy applies the rule after fusing: here lambda 1, one 1x2 layer, K = 3, lr 0.1."""
    from fedwsa.moving_target import curvatures, moving_target, shrink_factor

    moving = {"sizes": [2], "lr": 0.1, "momentum": 0.0, "steps": 3.0}
    s = FedWSA(initial_target=np.array([[0.0, 1.0]]), names=["w"], fraction_evaluate=0.0, moving=moving)
    replies = [_reply([[1.0, 3.0]], [0.0], 1), _reply([[3.0, 9.0]], [4.0], 3)]  # scopes (2, 1), (6, 3)
    s.aggregate_train(1, replies)
    fused = fuse_scopes([np.array([[2.0, 1.0]]), np.array([[6.0, 3.0]])], [1, 3], "mean")
    h_mu, h_sigma = curvatures(np.array([[0.0, 1.0]]), [2], "kl", "none", 1.0)  # 0.5 and 1 per weight
    expected = moving_target(np.array([[0.0, 1.0]]), fused, shrink_factor(h_mu, 0.1, 0.0, 3),
                             shrink_factor(h_sigma, 0.1, 0.0, 3))  # fmt: skip
    np.testing.assert_allclose(s.target, expected)
    assert not np.allclose(s.target, fused)  # it moved further than the fused scope
