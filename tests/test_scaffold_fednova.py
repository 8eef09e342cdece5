"""SCAFFOLD and FedNova against numbers computed by hand (fedwsa/scaffold.py, fedwsa/fednova.py), their
client-side correction, and their strategies on constructed messages (with unequal weights, step counts
and momentum: tests/test_algorithms.py, which also resumes every algorithm)."""

import numpy as np
import pytest
import torch
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MessageType, MetricRecord, RecordDict

from fedwsa.fednova import fednova_aggregate, fednova_norm
from fedwsa.run.config import ExperimentConfig, validate
from fedwsa.run.factory import new_model
from fedwsa.run.local_round import local_round, train_settings
from fedwsa.scaffold import (
    SCAFFOLD_CORRECTION,
    ControlVariate,
    scaffold_client_control,
    scaffold_server_control,
)
from fedwsa.train import local_step_count
from strategies.algorithms.fednova import FedNova
from strategies.algorithms.scaffold import Scaffold

A = np.array


def test_local_step_count_by_hand():
    assert local_step_count(100, 32, epochs=2) == 8  # 2 * ceil(100 / 32)
    assert local_step_count(100, 32, epochs=2, steps=5) == 5
    assert local_step_count(0, 32, epochs=2) == 0


def test_scaffold_controls_by_hand():
    # c_i+ = c_i - c + (x - y) / (lr * norm) = [0.1 - 0.2 + 0.5 / 0.5, 0 - 0.3 + 1 / 0.5] = [0.9, 1.7]
    x, y, c_i, c = {"w": A([1.0, 2.0])}, {"w": A([0.5, 1.0])}, {"w": A([0.1, 0.0])}, {"w": A([0.2, 0.3])}
    np.testing.assert_allclose(scaffold_client_control(c_i, c, x, y, lr=0.1, norm=5)["w"], [0.9, 1.7])
    # c + (sum of the deltas) / N = [0.2 + (1 + 3) / 4, 0.3 + (2 - 2) / 4] = [1.2, 0.3]
    deltas = [{"w": A([1.0, 2.0])}, {"w": A([3.0, -2.0])}]
    np.testing.assert_allclose(scaffold_server_control(c, deltas, num_clients=4)["w"], [1.2, 0.3])


def test_fednova_norm_by_hand():
    assert fednova_norm(3, 0.0) == 3.0
    # sum_k (1 - 0.5^k) / 0.5 for k = 1..3 = (0.5 + 0.75 + 0.875) / 0.5 = 4.25
    assert fednova_norm(3, 0.5) == pytest.approx(4.25)


def test_fednova_aggregate_by_hand():
    # p = 1/2, 1/2; norms 2, 4: tau_eff = 3; x - 3 (0.5 * 2 / 2 + 0.5 * 1 / 4) = -1.875 (FedAvg: -1.5)
    out = fednova_aggregate({"w": A([0.0], np.float32)}, [{"w": A([-2.0])}, {"w": A([-1.0])}], [5, 5], [2, 4])
    np.testing.assert_allclose(out["w"], [-1.875])
    assert out["w"].dtype == np.float32  # x's dtype
    equal = fednova_aggregate({"w": A([0.0])}, [{"w": A([-2.0])}, {"w": A([-1.0])}], [1, 3], [4, 4])
    np.testing.assert_allclose(equal["w"], [-1.25])  # equal steps: FedAvg's weighted average


def test_control_variate_gradient_is_the_correction():
    layer = torch.nn.Linear(3, 2)
    corr = {"weight": torch.full((2, 3), 0.5), "bias": torch.tensor([1.0, -1.0])}
    reg = ControlVariate(corr)
    reg(layer).backward()
    assert torch.equal(layer.weight.grad, corr["weight"]) and torch.equal(layer.bias.grad, corr["bias"])
    layer.zero_grad(set_to_none=True)
    reg.add_grad(layer)
    assert torch.equal(layer.bias.grad, corr["bias"])


def test_one_scaffold_step_is_the_plain_step_minus_lr_times_the_correction():
    cfg = validate(ExperimentConfig(num_clients=3, local_steps=1, momentum=0.0, out_dir="/tmp/unused"))
    start = new_model(cfg).state_dict()
    corr = {k: torch.full_like(v, 0.25) for k, v in start.items()}
    plain, _ = local_round(cfg, 1, start, train_settings(cfg, 1))
    corrected, _ = local_round(cfg, 1, start, train_settings(cfg, 1), {SCAFFOLD_CORRECTION: corr})
    for k in plain:  # y = x - lr (g + c - c_i)
        torch.testing.assert_close(corrected[k], plain[k] - cfg.lr * 0.25, rtol=0, atol=1e-6)


class _Grid:
    """What the strategies read of the round loop's grid."""

    def __init__(self):
        self.num_partitions, self.partition_of = 4, {10: 0, 11: 1}

    def get_node_ids(self):
        return [10, 11]

    def partition_of_reply(self, m):
        return m.metadata.src_node_id - 10


def _reply(node, w, n):
    sent = Message(RecordDict(), dst_node_id=node, message_type=MessageType.TRAIN)
    reply = Message(RecordDict({"arrays": ArrayRecord({"w": Array(A(w, np.float32))}),
                                "metrics": MetricRecord({"num-examples": n})}), reply_to=sent)  # fmt: skip
    reply.metadata.__dict__["_src_node_id"] = node
    return reply


def test_scaffold_strategy_sends_each_client_its_correction_and_updates_the_variates():
    s = Scaffold(grid=_Grid(), steps=[2, 4], lr=0.5, momentum=0.0, fraction_evaluate=0.0)
    x = ArrayRecord({"w": Array(A([1.0, 1.0], np.float32))})
    msgs = list(s.configure_train(1, x, ConfigRecord(), _Grid()))
    assert all(m.content["scaffold-correction"]["w"].numpy().tolist() == [0, 0] for m in msgs)  # c = c_i = 0
    s.aggregate_train(1, [_reply(10, [0.0, 1.0], 1), _reply(11, [1.0, -1.0], 3)])
    # c_0 = (x - y_0) / (0.5 * 2) = [1, 0]; c_1 = (x - y_1) / (0.5 * 4) = [0, 1]; c = (c_0 + c_1) / 4
    np.testing.assert_allclose(s.c_i[0]["w"], [1.0, 0.0])
    np.testing.assert_allclose(s.c_i[1]["w"], [0.0, 1.0])
    np.testing.assert_allclose(s.c["w"], [0.25, 0.25])
    msgs = list(s.configure_train(2, x, ConfigRecord(), _Grid()))
    got = {m.metadata.dst_node_id: m.content["scaffold-correction"]["w"].numpy().tolist() for m in msgs}
    assert got == {10: [-0.75, 0.25], 11: [0.25, -0.75]}  # c - c_i


def test_fednova_strategy_normalises_by_each_client_s_steps():
    s = FedNova(grid=_Grid(), steps=[2, 4], momentum=0.0, fraction_evaluate=0.0)
    s.configure_train(1, ArrayRecord({"w": Array(A([0.0], np.float32))}), ConfigRecord(), _Grid())
    arrays, _ = s.aggregate_train(1, [_reply(10, [-2.0], 5), _reply(11, [-1.0], 5)])
    np.testing.assert_allclose(arrays["w"].numpy(), [-1.875])  # as computed by hand above
