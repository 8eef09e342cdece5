"""Differential privacy (``privacy=``): the clipping bound, the noise's standard deviation,
epsilon against the accountant libraries, FedWSA's target from the released model, the
clients' mods, the server's check of client-side clipping, and resume."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MessageType, MetricRecord, RecordDict

from clients.privacy import privacy_mod
from fedwsa.privacy import (
    adaptive_events,
    central_noise_std,
    epsilon,
    local_noise_multiplier,
    local_noise_std,
    noise_seed,
)
from fedwsa.run.config import ConfigError, ExperimentConfig, StrategyConfig, validate
from fedwsa.run.threats import PrivacyConfig
from fedwsa.run.wire import RUN_CONFIG_KEY
from fedwsa.wsa import scope_of_arrays
from strategies import registry
from strategies.base import Setup
from strategies.privacy import Private
from strategies.replies import Update, beyond_bound
from tests.helpers import resumes_bit_for_bit

N = 200_000  # parameters: the noise's sample standard deviation is within 0.5 % (3 sigma: 1/sqrt(2N))


class _Grid:
    num_partitions = 4

    def __init__(self, n):
        self.partition_of = {10 + i: i for i in range(n)}

    def get_node_ids(self):
        return list(self.partition_of)

    def partition_of_reply(self, m):
        return m.metadata.src_node_id - 10


def _reply(node, w, n=7):
    sent = Message(RecordDict(), dst_node_id=node, message_type=MessageType.TRAIN)
    content = RecordDict({"arrays": ArrayRecord({"w": Array(np.asarray(w, np.float32))}),
                          "metrics": MetricRecord({"num-examples": n, "train-loss": 0.5})})  # fmt: skip
    reply = Message(content, reply_to=sent)
    reply.metadata.__dict__["_src_node_id"] = node
    return reply


def _private(kind, name="fedavg", m=4, size=N, **p):
    knobs = {"fusion": "global"} if name == "fedwsa" else {}
    p = PrivacyConfig(kind=kind, **p)
    cfg = validate(
        ExperimentConfig(num_clients=m, strategy=StrategyConfig(name, **knobs), privacy=p, out_dir="/tmp/x")
    )
    model = torch.nn.Module()
    model.w = torch.nn.Parameter(torch.zeros(size))
    setup = Setup(cfg, model, ["w"], _Grid(m), [10] * m)
    setup.flower["fraction_evaluate"] = 0.0
    inner = registry.unit(name).build(setup, registry.settings(cfg))
    return Private(inner, cfg, registry.unit(name).dp_mean, seeded=True), cfg


def _round(s, x, ys, rnd=1, m=4):
    s.configure_train(rnd, ArrayRecord({"w": Array(np.asarray(x, np.float32))}), ConfigRecord(), _Grid(m))
    new, _ = s.aggregate_train(rnd, [_reply(10 + i, y, n=i + 1) for i, y in enumerate(ys)])
    return new["w"].numpy().astype(np.float64)


# --- the mechanisms' numbers ------------------------------------------------------------------


def test_the_central_noise_has_the_documented_standard_deviation():
    """Updates within the bound and unequal weights: the release is the *unweighted* mean
    plus noise of std z C / m (to 0.5 %: a missing / m, a weighted mean or C / len would fail)."""
    z, c, m = 1.3, 0.02, 4
    s, _ = _private("central_fixed", noise_multiplier=z, clipping_norm=c, m=m)
    rng = np.random.default_rng(0)
    ys = [rng.normal(0, 1e-5, N) for _ in range(m)]  # norms ~0.0045 < C: not clipped
    assert all(np.linalg.norm(y) < c for y in ys)
    noise = _round(s, np.zeros(N), ys) - np.mean(np.asarray(ys, np.float32), axis=0)
    assert central_noise_std(z, c, m) == pytest.approx(z * c / m)
    assert np.std(noise) == pytest.approx(z * c / m, rel=0.01)
    assert abs(np.mean(noise)) < 4 * z * c / m / math.sqrt(N)
    assert s.spent()["noise_std"] == pytest.approx(z * c / m)


def test_every_update_is_clipped_to_the_bound_before_the_mean():
    """Server-side clipping: the strategy sees updates of norm <= C (the big ones scaled to C,
    the small one unchanged)."""
    c = 0.5
    s, _ = _private("central_fixed", noise_multiplier=1e-9, clipping_norm=c, size=1000)
    seen = []
    inner_aggregate = s.inner.aggregate_train

    def spy(rnd, replies):
        replies = list(replies)
        seen.extend(r.content["arrays"]["w"].numpy().astype(np.float64) for r in replies)
        return inner_aggregate(rnd, replies)

    s.inner.aggregate_train = spy
    x = np.full(1000, 0.3)
    rng = np.random.default_rng(1)
    ups = [rng.normal(0, 1, 1000) * scale for scale in (1e-3, 0.1, 1.0, 50.0)]  # norms 0.03 to 1600
    new = _round(s, x, [x + u for u in ups])  # the replies' weights: 1, 2, 3, 4 examples
    norms = [np.linalg.norm(y - x.astype(np.float32)) for y in seen]
    assert np.allclose(new, np.mean(seen, axis=0), atol=1e-6)  # the unweighted mean (noise ~1e-10)
    assert not np.allclose(new, np.average(seen, axis=0, weights=[1, 2, 3, 4]), atol=1e-3)
    assert len(norms) == 4 and max(norms) <= c * (1 + 1e-5)
    assert norms[0] == pytest.approx(np.linalg.norm(ups[0]), rel=1e-4)  # within the bound: untouched
    assert norms[3] == pytest.approx(c, rel=1e-5)


def test_epsilon_matches_the_accountant_libraries():
    """z = 1.1, 10 rounds, delta = 1e-5: our epsilon is dp-accounting's RDP accountant's, and
    Flower's own accountant (which wraps it) agrees; it is below the classic RDP bound
    min_a [T a / (2 z^2) + log(1/delta) / (a - 1)] (dp-accounting's conversion is tighter)."""
    from dp_accounting import NeighboringRelation, dp_event, rdp
    from flwr.supercore.privacy_accounting import (
        GaussianPrivacyEvent,
        SamplingMethod,
    )
    from flwr.supercore.privacy_accounting import (
        NeighboringRelation as FlowerRelation,
    )
    from flwr.supercore.privacy_accounting import (
        PrivacyConfig as FlowerConfig,
    )
    from flwr.supercore.privacy_accounting.rdp_accountant import RdpAccountant

    ours = epsilon([1.1] * 10, 1e-5)
    direct = rdp.RdpAccountant(neighboring_relation=NeighboringRelation.ADD_OR_REMOVE_ONE)
    direct.compose(dp_event.GaussianDpEvent(1.1), 10)
    assert ours == pytest.approx(direct.get_epsilon(1e-5), rel=1e-12)
    flower = RdpAccountant(
        FlowerConfig(1e-5, 10, FlowerRelation.ADD_OR_REMOVE_ONE, SamplingMethod.NO_AMPLIFICATION)
    )
    flower.compose(GaussianPrivacyEvent(1.1, 10, 10), 10)
    assert ours == pytest.approx(flower.get_privacy_spent().epsilon, rel=1e-9)
    classic = min(10 * a / (2 * 1.1**2) + math.log(1e5) / (a - 1) for a in np.linspace(1.01, 200, 20000))
    assert 0.8 * classic < ours <= classic
    assert epsilon([0.0], 1e-5) == math.inf
    assert epsilon([1.1] * 20, 1e-5) > ours  # more rounds, more spent


def test_adaptive_clipping_accounts_both_of_its_gaussians():
    """By hand: Flower noises the mean with the norm *after* its update and the clipped count
    with its own std (sensitivity 1): the mean's multiplier is z C_after / C_used."""
    assert adaptive_events(2.0, 1.0, 0.5, 0.25) == [1.0, 0.25]
    s, _ = _private("central_adaptive", noise_multiplier=0.5, clipping_norm=0.1, count_std=1.0, size=100)
    x = np.zeros(100)
    _round(s, x, [np.full(100, 1.0)] * 4)  # every update clipped: the norm grows by exp(0.2 * 0.5)
    z_update = (0.5**-2 - 2.0**-2) ** -0.5  # Flower's compute_adaptive_noise_params
    after = s.dp.clipping_norm
    assert s.multipliers[0] == pytest.approx(z_update * after / 0.1)
    assert s.multipliers[1] == pytest.approx(1.0)
    assert s.spent()["clipping_norm"] == pytest.approx(0.1)  # the bound these updates had


def test_local_dp_noise_and_epsilon(tmp_path):
    """The local mod: the client's update clipped to C, then noise of std 2C sqrt(2 ln(1.25/d))/eps
    (checked to 0.5 %); the server composes one Gaussian of multiplier sqrt(2 ln(1.25/d))/eps a round."""
    c, eps, delta = 0.3, 2.0, 1e-5
    p = PrivacyConfig(kind="local", clipping_norm=c, epsilon=eps, delta=delta)
    cfg = validate(ExperimentConfig(privacy=p, out_dir=str(tmp_path)))
    x = np.full(N, 0.1, np.float32)
    out = _mod_round(cfg, x, lambda: x + np.float32(5.0))  # a big update: clipped to C, then noised
    noise = out - x
    std = local_noise_std(c, eps, delta)
    assert std == pytest.approx(2 * c * math.sqrt(2 * math.log(1.25 / delta)) / eps)
    assert np.std(noise) == pytest.approx(std, rel=0.01)
    assert abs(np.mean(noise) - c / math.sqrt(N)) < 4 * std / math.sqrt(
        N
    )  # the clipped update: C / sqrt(N) each
    assert local_noise_multiplier(eps, delta) == pytest.approx(std / (2 * c))


# --- the clients' mods ---------------------------------------------------------------------------


def _mod_round(cfg, x, train, extra=None, seen=None):
    """One train message through ``privacy_mod`` to an app that replies ``train()``."""
    content = RecordDict({"arrays": ArrayRecord({"w": Array(x)}),
                          "config": ConfigRecord({"server-round": 1, "partition-id": 0,
                                                  "clipping_norm": cfg.privacy.clipping_norm})})  # fmt: skip
    for k, v in (extra or {}).items():
        content[k] = ArrayRecord({"w": Array(v)})
    msg = Message(content, dst_node_id=5, message_type=MessageType.TRAIN)
    ctx = Context(run_id=1, node_id=5, node_config={}, state=RecordDict(),
                  run_config={RUN_CONFIG_KEY: cfg.to_json()})  # fmt: skip

    def app(m, c):
        if seen is not None:
            seen.extend(m.content.array_records)
        reply = RecordDict({"arrays": ArrayRecord({"w": Array(np.asarray(train(), np.float32))}),
                            "metrics": MetricRecord({"num-examples": 1})})  # fmt: skip
        return Message(reply, reply_to=m)

    out = privacy_mod(msg, ctx, app)
    assert not out.has_error(), out.error
    return out.content["arrays"]["w"].numpy().astype(np.float64)


def test_client_side_clipping_bounds_the_update_and_keeps_the_strategys_arrays(tmp_path):
    cfg = validate(
        ExperimentConfig(privacy=PrivacyConfig(kind="client_fixed", clipping_norm=0.5), out_dir=str(tmp_path))
    )
    x = np.zeros(1000, np.float32)
    seen: list[str] = []
    out = _mod_round(cfg, x, lambda: x + 3.0, extra={"scaffold-c": np.ones(1000, np.float32)}, seen=seen)
    assert np.linalg.norm(out - x) == pytest.approx(0.5, rel=1e-5)
    assert sorted(seen) == ["arrays", "scaffold-c"]  # the app still gets SCAFFOLD's arrays
    small = _mod_round(cfg, x, lambda: x + 1e-3)  # within the bound: unchanged
    assert np.allclose(small, 1e-3)
    plain = dataclasses.replace(cfg, privacy=PrivacyConfig())
    assert np.allclose(_mod_round(plain, x, lambda: x + 3.0), 3.0)  # privacy=none: not touched


def test_the_server_rejects_an_update_a_client_did_not_clip():
    base = {"w": np.full(10_000, 0.5, np.float32)}

    def up(pid, delta):
        return Update(pid, None, {"w": base["w"] + np.float32(delta)}, 1, 0.0, 0.0, "")  # type: ignore[arg-type]

    bound = 1.0  # norm of a constant delta d over 10^4 weights: 100 d
    kept, rejected = beyond_bound([up(0, 0.00999), up(1, 0.0101), up(2, 0.5)], base, bound)
    assert [u.partition_id for u in kept] == [0]
    assert sorted(rejected) == [1, 2] and "exceeds privacy.clipping_norm=1" in rejected[1]


def test_seeded_noise_repeats_and_fresh_noise_does_not():
    def draw(seed):
        with noise_seed(seed):
            return np.random.normal(size=4)

    before = np.random.get_state()[1].copy()
    assert np.array_equal(draw(7), draw(7))
    assert np.array_equal(np.random.get_state()[1], before)  # the global generator is given back
    assert not np.array_equal(draw(None), draw(None))


# --- FedWSA's target, config, runs ------------------------------------------------------------------


def test_fedwsa_target_comes_from_the_released_model():
    """With central DP the next target is the noised model's scope, not the clients' scopes
    nor the un-noised mean's."""
    s, _ = _private("central_fixed", name="fedwsa", noise_multiplier=1.0, clipping_norm=1.0, size=1000)
    rng = np.random.default_rng(2)
    ys = [rng.normal(0, 0.01, 1000) for _ in range(4)]
    new = _round(s, np.zeros(1000), ys)
    target = s.inner.target
    assert np.array_equal(target, scope_of_arrays({"w": new.astype(np.float32)}, ["w"]))
    clean = scope_of_arrays({"w": np.mean(np.asarray(ys, np.float32), axis=0)}, ["w"])
    assert abs(target[0, 1] - clean[0, 1]) > 0.05  # noise std 0.25 per weight: the sigma moved


def test_privacy_config_is_checked():
    def bad(key, **p):
        with pytest.raises(ConfigError) as e:
            validate(ExperimentConfig(privacy=PrivacyConfig(**p)))
        assert e.value.key == key

    bad("privacy.kind", kind="dp")
    bad("privacy.clipping_norm", kind="central_fixed", clipping_norm=0.0)
    bad("privacy.clipping_norm", kind="central_fixed", clipping_norm=float("nan"))
    bad("privacy.delta", kind="local", delta=1.0)
    bad("privacy.epsilon", kind="local", epsilon=-1.0)
    bad("privacy.noise_multiplier", kind="central_fixed", noise_multiplier=0.0)
    bad(
        "privacy.noise_multiplier", kind="central_adaptive", noise_multiplier=1.0
    )  # 5 clients: count std 0.25
    validate(
        ExperimentConfig(privacy=PrivacyConfig(kind="central_adaptive", noise_multiplier=1.0, count_std=1.0))
    )
    with pytest.raises(ConfigError) as e:
        central = PrivacyConfig(kind="central_fixed")
        registry.settings(validate(ExperimentConfig(strategy=StrategyConfig("fedwsa"), privacy=central)))
    assert e.value.key == "strategy.fusion"
    # a run without privacy keeps its identity: its checkpoints stay resumable
    assert "privacy" not in ExperimentConfig().identity()


@pytest.mark.parametrize(
    "name,kind", [("fedwsa", "central_fixed"), ("fedavg", "central_adaptive"), ("scaffold", "client_fixed"),
                  ("moon", "local")],
)  # fmt: skip
def test_a_private_run_records_epsilon_and_resumes_bit_for_bit(tmp_path, name, kind):
    knobs = {"fusion": "global"} if name == "fedwsa" else {}
    p = PrivacyConfig(kind=kind, clipping_norm=0.5, noise_multiplier=0.3, count_std=1.0, epsilon=2.0)
    base = dict(num_clients=4, num_rounds=3, local_steps=2, eval_batch_size=400, privacy=p,
                strategy=StrategyConfig(name, **knobs))  # fmt: skip
    rows = resumes_bit_for_bit(tmp_path, **base)
    eps = [r["epsilon"] for r in rows]
    if name == "scaffold":  # its control variates are built from the raw replies: no epsilon claimed
        assert eps == [None] * 4
    else:
        assert eps[0] == 0.0 and eps[1] < eps[2] < eps[3] and all(r["num_replies"] == 4 for r in rows[1:])
