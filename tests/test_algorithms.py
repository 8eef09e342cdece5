"""Every registered algorithm: its config file, its declared state, its update against numbers
computed by hand on small arrays (unequal client weights, unequal step counts, momentum above
0, so that a wrong weighting or a dropped term fails), a bit-identical resume from a
mid-run checkpoint, and a user's own algorithm run from a config key."""

import gc
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MessageType, MetricRecord, RecordDict

from fedwsa.feddyn import FEDDYN_ALPHA, FEDDYN_STATE, Dynamic, feddyn_client_state, feddyn_server
from fedwsa.fednova import fednova_norm
from fedwsa.regularizers import build_regularizer
from fedwsa.run.config import ExperimentConfig, StrategyConfig, validate
from strategies import registry
from strategies.base import RoundState, Setup
from tests.helpers import ROOT, metrics, resumes_bit_for_bit

A = np.array
CONF = ROOT / "experiments" / "conf" / "strategy"


# --- the registry ---------------------------------------------------------------------------


def test_every_algorithm_has_its_config_file_with_its_defaults():
    assert len(registry.UNITS) >= 16
    for name in registry.UNITS:
        data = yaml.safe_load((CONF / f"{name}.yaml").read_text())
        assert data == {"name": name, **registry.defaults(name)}, name
    files = {p.stem for p in CONF.glob("*.yaml")} - {"external"}
    assert files == set(registry.UNITS)  # no config file without its unit


def test_every_strategy_declares_its_state_and_has_its_own_colour():
    for name in registry.UNITS:
        cls = type(_build(name))
        assert cls.state is not RoundState.state and cls.restore is not RoundState.restore, name
    colours = [u.color for u in registry.UNITS.values()]
    assert len(set(colours)) == len(colours)


def test_a_strategy_that_forgets_its_state_fails_loudly():
    class Forgetful(RoundState):
        pass

    with pytest.raises(NotImplementedError, match="must declare its state"):
        Forgetful().state()


# --- hand-computed updates on small arrays ------------------------------------------------------


class _Grid:
    """What the strategies read of the round loop's grid: nodes 10.. hold partitions 0.."""

    def __init__(self, n=2):
        self.num_partitions = 4
        self.partition_of = {10 + i: i for i in range(n)}

    def get_node_ids(self):
        return list(self.partition_of)

    def partition_of_reply(self, m):
        return m.metadata.src_node_id - 10


def _reply(node, w, n, loss=0.5):
    sent = Message(RecordDict(), dst_node_id=node, message_type=MessageType.TRAIN)
    content = RecordDict({"arrays": ArrayRecord({"w": Array(A(w, np.float32))}),
                          "metrics": MetricRecord({"num-examples": n, "train-loss": loss})})  # fmt: skip
    reply = Message(content, reply_to=sent)
    reply.metadata.__dict__["_src_node_id"] = node
    return reply


def _build(name, steps=(2, 4), momentum=0.0, lr=0.5, nodes=2, **knobs):
    cfg = validate(ExperimentConfig(num_clients=max(4, nodes), strategy=StrategyConfig(name, **knobs),
                                    momentum=momentum, lr=lr, out_dir="/tmp/unused"))  # fmt: skip
    model = torch.nn.Module()
    model.w = torch.nn.Parameter(torch.zeros(1))  # the one array of the replies below
    setup = Setup(cfg, model, ["w"], _Grid(nodes), ())
    setup.steps = lambda: list(steps)  # type: ignore[method-assign]
    setup.flower["fraction_evaluate"] = 0.0
    return registry.unit(name).build(setup, registry.settings(cfg))


def _round(s, rnd, x, replies, nodes=2):
    """One round: send ``x`` (a list), aggregate ``replies`` = [(node, y, n, loss)]."""
    s.configure_train(rnd, ArrayRecord({"w": Array(A(x, np.float32))}), ConfigRecord(), _Grid(nodes))
    new, _ = s.aggregate_train(rnd, [_reply(*r) for r in replies])
    return None if new is None else new["w"].numpy().astype(np.float64)


# two clients: y = 1 with 1 example, y = 3 with 3 examples; the weighted mean is 2.5, the plain one 2
TWO = [(10, [1.0], 1, 0.5), (11, [3.0], 3, 2.0)]


def test_fedavg_and_fedprox_weigh_by_examples():
    for name in ("fedavg", "fedprox"):
        np.testing.assert_allclose(_round(_build(name), 1, [0.0], TWO), [2.5], rtol=1e-6)


def test_fedavgm_by_hand():
    s = _build("fedavgm", server_learning_rate=1.0, server_momentum=0.9)
    # round 1: pseudo-gradient x - avg = 0 - 2.5; v = -2.5 (Flower starts v at the first one); x = 0 + 2.5
    np.testing.assert_allclose(_round(s, 1, [0.0], TWO), [2.5], rtol=1e-6)
    # round 2 from 2.5: avg = (3.5 + 3 * 2.5) / 4 = 2.75, pg = -0.25; v = 0.9 * -2.5 - 0.25 = -2.5; x = 5.0
    # (without momentum 2.75; with a plain mean 3.0 + ...)
    np.testing.assert_allclose(_round(s, 2, [2.5], [(10, [3.5], 1), (11, [2.5], 3)]), [5.0], rtol=1e-6)


def _adaptive(rnd, delta, m, v, eta, beta_1, tau, bias=True):
    """One adaptive server step as Flower writes it: bias correction with ``rnd + 1``."""
    step = eta * math.sqrt(1 - 0.99 ** (rnd + 1)) / (1 - beta_1 ** (rnd + 1)) if bias else eta
    return step * m / (math.sqrt(v) + tau)


def test_fedadam_by_hand():
    s = _build("fedadam", eta=0.1, beta_1=0.9, beta_2=0.99, tau=1e-3)
    # round 1: delta = 2.5; m = 0.1 * 2.5 = 0.25; v = 0.01 * 2.5^2 = 0.0625
    x1 = _adaptive(1, 2.5, 0.25, 0.0625, 0.1, 0.9, 1e-3)
    np.testing.assert_allclose(_round(s, 1, [0.0], TWO), [x1], rtol=1e-5)
    # round 2 from x1, both clients at x1 + 1: delta = 1; m = 0.9 * 0.25 + 0.1 = 0.325;
    # v = 0.99 * 0.0625 + 0.01 = 0.071875: the moments of round 1 matter
    x2 = x1 + _adaptive(2, 1.0, 0.325, 0.071875, 0.1, 0.9, 1e-3)
    got = _round(s, 2, [x1], [(10, [x1 + 1], 1), (11, [x1 + 1], 3)])
    np.testing.assert_allclose(got, [x2], rtol=1e-5)


def test_fedyogi_by_hand():
    s = _build("fedyogi", eta=0.01, beta_1=0.9, beta_2=0.99, tau=1e-3)
    # v = 0 - 0.01 * 6.25 * sign(0 - 6.25) = 0.0625; m = 0.25; x = 0.01 * 0.25 / (0.25 + 0.001)
    np.testing.assert_allclose(_round(s, 1, [0.0], TWO), [0.01 * 0.25 / 0.251], rtol=1e-5)
    # round 2, delta = 1: m = 0.325; v = 0.0625 - 0.01 * 1 * sign(0.0625 - 1) = 0.0725
    got = _round(s, 2, [0.0], [(10, [1.0], 1), (11, [1.0], 3)])
    np.testing.assert_allclose(got, [0.01 * 0.325 / (math.sqrt(0.0725) + 0.001)], rtol=1e-5)


def test_fedadagrad_by_hand():
    s = _build("fedadagrad", eta=0.1, tau=1e-3)
    # m = delta = 2.5 (beta_1 = 0); v = 6.25; x = 0.1 * 2.5 / (2.5 + 0.001)
    np.testing.assert_allclose(_round(s, 1, [0.0], TWO), [0.1 * 2.5 / 2.501], rtol=1e-5)
    # round 2, delta = 1: v = 6.25 + 1 = 7.25 (accumulated)
    got = _round(s, 2, [0.0], [(10, [1.0], 1), (11, [1.0], 3)])
    np.testing.assert_allclose(got, [0.1 * 1.0 / (math.sqrt(7.25) + 0.001)], rtol=1e-5)


def test_qfedavg_by_hand():
    s = _build("qfedavg", q=1.0, lr=0.5)
    # L = 1 / lr = 2; grad_k = L (x - y_k): -2, -6; delta_k = loss_k^q grad_k: 0.5 * -2 = -1, 2 * -6 = -12
    # h_k = q loss^(q-1) ||grad_k||^2 + L loss^q: 4 + 1 = 5, 36 + 4 = 40; x = 0 - (-13) / 45
    np.testing.assert_allclose(_round(s, 1, [0.0], TWO), [13 / 45], rtol=1e-5)


def test_fedmedian_and_fedtrimmedavg_ignore_the_weights():
    five = [(10 + i, [v], n) for i, (v, n) in enumerate([(1.0, 1), (2.0, 9), (3.0, 1), (4.0, 1), (100.0, 1)])]
    np.testing.assert_allclose(_round(_build("fedmedian", nodes=5), 1, [0.0], five, 5), [3.0])
    # beta 0.2 of 5 cuts one at each end: mean(2, 3, 4)
    np.testing.assert_allclose(_round(_build("fedtrimmedavg", beta=0.2, nodes=5), 1, [0.0], five, 5), [3.0])


FOUR = [(10, [0.0], 1), (11, [1.0], 3), (12, [2.5], 1), (13, [10.0], 1)]
# n - f - 2 = 2 nearest (squared distances): 0 -> 1 + 6.25 = 7.25; 1 -> 1 + 2.25 = 3.25;
# 2.5 -> 2.25 + 6.25 = 8.5; 10 -> 56.25 + 81 = 137.25


def test_krum_and_multikrum_by_hand():
    np.testing.assert_allclose(_round(_build("krum", nodes=4), 1, [0.0], FOUR, 4), [1.0])
    # the two best (1 and 0), weighted by examples: (3 * 1 + 1 * 0) / 4 (the plain mean is 0.5)
    s = _build("multikrum", num_nodes_to_select=2, nodes=4)
    np.testing.assert_allclose(_round(s, 1, [0.0], FOUR, 4), [0.75])
    # num_nodes_to_select = 0 is n - f = 4: every model, weighted: (0 + 3 + 2.5 + 10) / 6
    np.testing.assert_allclose(_round(_build("multikrum", nodes=4), 1, [0.0], FOUR, 4), [15.5 / 6], rtol=1e-6)


def test_bulyan_by_hand():
    values = [0.0, 1.0, 2.0, 3.0, 4.0, 50.0, -40.0]
    seven = [(10 + i, [v], 1 + i) for i, v in enumerate(values)]
    # f = 1, n = 7: Multi-Krum keeps theta = n - 2f = 5 (scores over the n - f - 2 = 4 nearest:
    # 0..4 score 1+1+4+9=15.. lowest, 50 and -40 far off), so 0, 1, 2, 3, 4; their median is 2;
    # beta = theta - 2f = 3 values nearest 2 per coordinate: 1, 2, 3, mean 2 (unweighted)
    s = _build("bulyan", num_malicious_nodes=1, nodes=7)
    np.testing.assert_allclose(_round(s, 1, [0.0], seven, 7), [2.0])
    # fewer than 4f + 3 replies: no aggregate (the loop skips the round)
    assert _round(_build("bulyan", num_malicious_nodes=1, nodes=7), 1, [0.0], seven[:6], 7) is None


def test_fednova_strategy_weighs_by_examples_and_normalises_with_momentum():
    s = _build("fednova", steps=(2, 4), momentum=0.5)
    # ||a||_1 at momentum 0.5: 2 steps 2.5, 4 steps 6.125 (fednova_norm); p = 1/4, 3/4
    assert (fednova_norm(2, 0.5), fednova_norm(4, 0.5)) == (2.5, 6.125)
    tau = 0.25 * 2.5 + 0.75 * 6.125
    expected = 0 - tau * (0.25 * 2 / 2.5 + 0.75 * 1 / 6.125)  # y = -2 (1 example), -1 (3 examples)
    got = _round(s, 1, [0.0], [(10, [-2.0], 1), (11, [-1.0], 3)])
    np.testing.assert_allclose(got, [expected], rtol=1e-6)
    # an unweighted tau_eff (4.3125) or momentum ignored (norms 2 and 4) gives another number
    assert abs(expected - (-4.3125 * (0.25 * 2 / 2.5 + 0.75 / 6.125))) > 0.1
    assert abs(expected - (-3.5 * (0.25 * 2 / 2 + 0.75 / 4))) > 0.1


def test_scaffold_strategy_uses_the_momentum_aware_step_count():
    s = _build("scaffold", steps=(2, 4), momentum=0.5, lr=0.5)
    _round(s, 1, [1.0], [(10, [0.0], 1), (11, [0.0], 3)])
    # c_i = (x - y) / (lr ||a_i||_1) = 1 / (0.5 * 2.5) = 0.8 and 1 / (0.5 * 6.125)
    # (plain K would give 1.0 and 0.5); c = (c_0 + c_1) / 4 clients
    np.testing.assert_allclose(s.c_i[0]["w"], [0.8], rtol=1e-6)
    np.testing.assert_allclose(s.c_i[1]["w"], [1 / 3.0625], rtol=1e-6)
    np.testing.assert_allclose(s.c["w"], [(0.8 + 1 / 3.0625) / 4], rtol=1e-6)


def test_feddyn_by_hand():
    # alpha 0.5, m = 4 clients, x = 0: g_0 = 0 - 0.5 (1 - 0) = -0.5, g_1 = -0.5 * 3 = -1.5
    g0 = feddyn_client_state({"w": A([0.0])}, {"w": A([0.0])}, {"w": A([1.0])}, 0.5)
    np.testing.assert_allclose(g0["w"], [-0.5])
    # h = 0 - 0.5 / 4 (1 + 3) = -0.5; theta = mean(1, 3) - h / alpha = 2 + 1 = 3 (unweighted)
    h, theta = feddyn_server({"w": A([0.0])}, {"w": A([0.0])}, [{"w": A([1.0])}, {"w": A([3.0])}], 0.5, 4)
    np.testing.assert_allclose(h["w"], [-0.5])
    np.testing.assert_allclose(theta["w"], [3.0])
    s = _build("feddyn", alpha=0.5)
    np.testing.assert_allclose(_round(s, 1, [0.0], TWO), [3.0], rtol=1e-6)
    np.testing.assert_allclose([s.g[0]["w"], s.g[1]["w"], s.h["w"]], [[-0.5], [-1.5], [-0.5]])
    # round 2 sends alpha and each client's g_k with its message
    msgs = s.configure_train(2, ArrayRecord({"w": Array(A([3.0], np.float32))}), ConfigRecord(), _Grid())
    sent = {m.metadata.dst_node_id: m.content[FEDDYN_STATE]["w"].numpy().tolist() for m in msgs}
    assert sent == {10: [-0.5], 11: [-1.5]}
    assert all(m.content["config"][FEDDYN_ALPHA] == 0.5 for m in msgs)


def test_feddyn_client_term_by_hand():
    layer = torch.nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, 2.0]]))
    g = {"weight": torch.tensor([[0.2, -0.4]])}
    term = build_regularizer(layer, {FEDDYN_ALPHA: 0.5}, {FEDDYN_STATE: g})
    assert isinstance(term, Dynamic)
    with torch.no_grad():
        layer.weight.add_(torch.tensor([[1.0, -1.0]]))  # theta - anchor = (1, -1); theta = (2, 1)
    # value: -<g, theta> + alpha / 2 ||theta - anchor||^2 = -(0.4 - 0.4) + 0.25 * 2 = 0.5
    assert term(layer).item() == pytest.approx(0.5)
    term.add_grad(layer)  # gradient: -g + alpha (theta - anchor) = (-0.2 + 0.5, 0.4 - 0.5)
    torch.testing.assert_close(layer.weight.grad, torch.tensor([[0.3, -0.1]]))
    assert build_regularizer(layer, {}, {}) is None  # no alpha: plain SGD


# --- resume, for every registered algorithm -----------------------------------------------------

KNOBS = {"krum": {}, "bulyan": {}}  # f = 0 needs 3 clients a round: 3 of 4 below


@pytest.mark.parametrize("name", sorted(registry.UNITS))
def test_a_resumed_run_is_bit_identical(tmp_path, name, monkeypatch):
    """Whatever a strategy keeps across rounds (moments, momentum, control variates, h and the
    clients' g_k, FedWSA's target) survives a crash through its checkpoint."""
    # Flower's QFedAvg and Bulyan call gc.collect() per reply (0.15 s each here); it frees
    # memory and changes no number
    monkeypatch.setattr(gc, "collect", lambda *a: 0)
    base = dict(num_clients=4, num_rounds=3, fraction_train=0.75, local_steps=2, eval_batch_size=400,
                strategy=StrategyConfig(name, **KNOBS.get(name, {})))  # fmt: skip
    resumes_bit_for_bit(tmp_path, **base)


def test_the_resume_test_catches_a_forgotten_state(tmp_path, monkeypatch):
    """FedAdam with its moments dropped from the checkpoint resumes to another model."""
    from strategies.algorithms.fedadam import FedAdam

    monkeypatch.setattr(FedAdam, "state", lambda self: {})
    monkeypatch.setattr(FedAdam, "restore", lambda self, state: None)
    with pytest.raises(AssertionError):
        test_a_resumed_run_is_bit_identical(tmp_path, "fedadam", monkeypatch)


# --- a user's own algorithm -----------------------------------------------------------------------


def _documented_example():
    """The worked example of docs/algorithms.md, as a user would copy it."""
    text = (ROOT / "docs" / "algorithms.md").read_text()
    block = text.split("<!-- example: my_lab/server_step.py -->", 1)[1]
    return block.split("```python\n", 1)[1].split("```", 1)[0]


def test_an_algorithm_from_outside_the_project_runs_from_a_config_key(tmp_path):
    """The way a user adds one in their own repository: the documented module with a UNIT, on
    PYTHONPATH, named by ``strategy.name`` (docs/algorithms.md, "Adding an algorithm")."""
    pkg = tmp_path / "my_lab"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "server_step.py").write_text(_documented_example())
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}

    def launch(name, *extra):
        cmd = [sys.executable, "-m", "experiments.run", "engine=inprocess", "num_clients=3", "num_rounds=2",
               "strategy=external", "strategy.name=my_lab.server_step", f"out_dir={tmp_path / name}",
               *extra]  # fmt: skip
        return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)

    frozen = launch("frozen", "+strategy.step=0.0")
    assert frozen.returncode == 0, frozen.stdout[-2000:] + frozen.stderr[-2000:]
    rows, status = metrics(tmp_path / "frozen")
    assert status == "finished" and len(rows) == 3
    # step 0 keeps the initial model: every round evaluates it again
    assert len({(r["test_accuracy"], r["test_loss"]) for r in rows}) == 1
    moved = launch("moved")  # the default step 1 is FedAvg
    assert moved.returncode == 0, moved.stderr[-2000:]
    assert metrics(tmp_path / "moved")[0][-1]["test_loss"] != rows[-1]["test_loss"]
    bad = launch("bad", "+strategy.step=2.0")
    assert bad.returncode == 2 and bad.stderr.strip().splitlines() == [
        "error: strategy.step: must be in [0, 1], got 2.0"
    ]
    missing = launch("missing", "strategy.name=my_lab.nothing_here")
    assert missing.returncode == 2 and "cannot import 'my_lab.nothing_here'" in missing.stderr


# --- MOON ---------------------------------------------------------------------------------------


def test_moon_contrastive_loss_by_hand():
    from fedwsa.moon import contrastive_loss

    z, glob, prev = torch.tensor([[1.0, 0.0]]), torch.tensor([[2.0, 0.0]]), torch.tensor([[0.0, 3.0]])
    # cos(z, glob) = 1, cos(z, prev) = 0; logits (2, 0) at tau 0.5: -log(e^2 / (e^2 + 1)) = log(1 + e^-2)
    assert contrastive_loss(z, glob, prev, 0.5).item() == pytest.approx(math.log(1 + math.exp(-2)), rel=1e-6)
    # the previous model as close as the global one: log 2 (NIID-Bench's first round)
    assert contrastive_loss(z, glob, glob, 0.5).item() == pytest.approx(math.log(2), rel=1e-6)


def test_moon_term_uses_the_penultimate_representation_and_leaves_no_hook():
    from fedwsa.moon import MOON_MU, MOON_PREVIOUS, MOON_TEMPERATURE, Contrastive, contrastive_loss

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    previous = {k: v + 0.5 for k, v in model.state_dict().items()}
    glob = {k: v.clone() for k, v in model.state_dict().items()}
    config = {MOON_MU: 2.0, MOON_TEMPERATURE: 0.5}
    assert build_regularizer(model, config, {}) is None  # no previous model yet: no term
    term = build_regularizer(model, config, {MOON_PREVIOUS: previous})
    assert isinstance(term, Contrastive)
    with torch.no_grad():
        model[0].weight.add_(0.1)  # one step away from the global model
    x = torch.randn(5, 3)
    model(x)
    got = term.batch_term(model, x)

    def rep(state):  # the input of the last linear layer, by hand
        return torch.relu(x @ state["0.weight"].T + state["0.bias"])

    now = {k: v.detach() for k, v in model.state_dict().items()}
    expected = 2.0 * contrastive_loss(rep(now), rep(glob), rep(previous), 0.5)
    torch.testing.assert_close(got, expected)
    term.close()
    assert not model[2]._forward_hooks  # the model is reused next round


def test_moon_strategy_keeps_and_sends_each_client_s_last_model():
    from fedwsa.moon import MOON_MU, MOON_PREVIOUS

    s = _build("moon", mu=1.0, temperature=0.5)
    x = ArrayRecord({"w": Array(A([0.0], np.float32))})
    msgs = list(s.configure_train(1, x, ConfigRecord(), _Grid()))
    assert all(MOON_PREVIOUS not in m.content for m in msgs) and msgs[0].content["config"][MOON_MU] == 1.0
    new, _ = s.aggregate_train(1, [_reply(*r) for r in TWO])
    np.testing.assert_allclose(new["w"].numpy(), [2.5])  # FedAvg's weighted average
    msgs = s.configure_train(2, new, ConfigRecord(), _Grid())
    assert {m.metadata.dst_node_id: m.content[MOON_PREVIOUS]["w"].numpy().tolist() for m in msgs} == {
        10: [1.0],
        11: [3.0],
    }


def test_a_knob_of_another_algorithm_on_the_command_line_is_one_line_exit_2(capsys):
    from experiments.launch.preflight import preflight_groups

    with pytest.raises(SystemExit) as e:
        preflight_groups(["strategy=fedprox", "strategy.wsa_lambda=1"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err == "error: strategy.wsa_lambda: not a knob of fedprox (its knobs: proximal_mu)\n"
    preflight_groups(["strategy=fedwsa", "strategy.wsa_lambda=1", "+strategy.anything=1"])  # Hydra's to judge


def test_a_preset_that_chooses_the_strategy_takes_its_knobs_on_the_command_line():
    """``experiment=tune_prox`` picks FedProx inside the preset: its knob is not refused."""
    from experiments.launch.preflight import preflight_groups

    preflight_groups(["experiment=tune_prox", "strategy.proximal_mu=0.1"])
