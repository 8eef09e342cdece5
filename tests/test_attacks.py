"""Simulated attacks (fedwsa/attacks.py): each changes exactly what it says, by hand on small
arrays; the round loop applies them to the attackers only and says who attacked; the robust
scope fusions by hand; a real federation refuses them."""

import dataclasses
import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch
from flwr.app import Array, ArrayRecord, Message, MessageType, RecordDict

from fedwsa import attacks
from fedwsa.robust import robust_scope, trimmed_mean
from fedwsa.run.config import AttackConfig, ConfigError, ExperimentConfig, StrategyConfig, validate
from fedwsa.run.factory import client_data, new_model
from fedwsa.run.local_round import local_round, train_settings
from fedwsa.wsa import array_scope, fuse_scopes
from strategies.replies import Update, attack, attackers
from strategies.rounds import run
from tests.helpers import ROOT, metrics
from tests.inprocess import LocalGrid

A = np.array
X = {"w": A([1.0, 2.0], np.float32), "steps": A([7], np.int64)}  # the global model sent
Y = {"w": A([2.0, 0.0], np.float32), "steps": A([9], np.int64)}  # a client's reply: update (1, -2)


def test_attackers_are_drawn_by_seed_as_a_count_or_a_fraction():
    assert attacks.attacker_count(10, 3) == 3 and attacks.attacker_count(10, 0.25) == 2  # round(2.5) = 2
    a = attacks.choose_attackers(10, 3, seed=0)
    assert a == sorted(a) and len(set(a)) == 3 and all(0 <= i < 10 for i in a)
    assert a == attacks.choose_attackers(10, 3, seed=0)  # the same seed, the same attackers
    assert any(attacks.choose_attackers(10, 3, seed=s) != a for s in range(1, 5))


def test_sign_flip_and_scale_by_hand():
    np.testing.assert_array_equal(attacks.sign_flip(X, Y)["w"], [0.0, 4.0])  # x - (y - x)
    np.testing.assert_array_equal(attacks.scale(X, Y, 10.0)["w"], [11.0, -18.0])  # x + 10 (y - x)
    assert attacks.sign_flip(X, Y)["steps"].tolist() == [9]  # integer buffers pass unchanged
    assert attacks.sign_flip(X, Y)["w"].dtype == np.float32


def test_noise_adds_the_documented_standard_deviation():
    n = 200_000
    x, y = {"w": np.zeros(n, np.float32)}, {"w": np.full(n, 0.5, np.float32)}
    added = attacks.noise(x, y, 0.3, np.random.default_rng(1))["w"].astype(np.float64) - 0.5
    # the sample std of 200,000 draws is within 0.3 * 4.5 / sqrt(2n) = 0.002 of 0.3 (4.5 SE); a
    # variance instead of a std (0.09) or the update's scale (0.5) is far outside
    assert abs(added.std() - 0.3) < 0.002 and abs(added.mean()) < 0.003


def test_alie_by_hand():
    # n = 10 replies, m = 3 attackers: s = floor(10 / 2 + 1) - 3 = 3; z = Phi^-1(7 / 10) = 0.5244
    assert attacks.alie_z(10, 3) == pytest.approx(0.524400512, rel=1e-6)
    x = {"w": A([0.0, 0.0])}
    ys = [{"w": A([1.0, 0.0])}, {"w": A([3.0, 4.0])}]  # updates: mean (2, 2), population std (1, 2)
    np.testing.assert_allclose(attacks.alie(x, ys, z=0.5)["w"], [2 - 0.5 * 1, 2 - 0.5 * 2])


def test_scope_shift_rescales_the_scoped_tensors_about_their_mean():
    y = {"w": A([1.0, 3.0], np.float32), "b": A([5.0], np.float32)}
    out = attacks.scope_shift(y, ["w"], 2.0)
    np.testing.assert_array_equal(out["w"], [0.0, 4.0])  # mean 2 kept, spread doubled
    assert out["b"].tolist() == [5.0]  # not scoped: unchanged
    mu, sigma = array_scope(out["w"])
    assert mu == pytest.approx(2.0) and sigma == pytest.approx(2 * array_scope(y["w"])[1], rel=1e-6)


def test_flip_labels_by_hand():
    assert attacks.flip_labels(np.array([0, 3, 9]), 10).tolist() == [9, 6, 0]
    assert attacks.flip_labels(torch.tensor([1, 2]), 3).tolist() == [1, 0]


def _update(pid, w):
    arrays = {"w": A(w, np.float32)}
    msg = Message(RecordDict({"arrays": ArrayRecord({"w": Array(arrays["w"])})}), dst_node_id=pid,
                  message_type=MessageType.TRAIN)  # fmt: skip
    return Update(pid, msg, arrays, 1, 0.5, 0.0, str(pid))


@pytest.mark.parametrize("kind", ["sign_flip", "scale", "scope"])
def test_the_loop_s_attack_changes_the_attackers_only_and_their_messages(kind):
    x = ArrayRecord({"w": Array(A([1.0, 2.0], np.float32))})
    ups = [_update(0, [2.0, 0.0]), _update(1, [1.0, 4.0]), _update(2, [0.0, 0.0])]
    a = AttackConfig(kind=kind, clients=1, scale=10.0 if kind == "scale" else 3.0)
    out = attack(ups, x, [1], a, 1, 0, names=["w"])
    assert [out[0].arrays["w"].tolist(), out[2].arrays["w"].tolist()] == [[2.0, 0.0], [0.0, 0.0]]  # honest
    np.testing.assert_allclose(out[1].arrays["w"], _by_hand(kind), rtol=1e-6)
    # the message carries the attacker's model too: aggregation and FedWSA's scopes see it
    np.testing.assert_allclose(out[1].message.content["arrays"]["w"].numpy(), out[1].arrays["w"])


def _by_hand(kind):
    """Client 1 sent y = (1, 4) from x = (1, 2): its update is d = (0, 2)."""
    if kind == "sign_flip":
        return [1.0 - 0.0, 2.0 - 2.0]  # x - d
    if kind == "scale":
        return [1.0 + 10 * 0.0, 2.0 + 10 * 2.0]  # x + 10 d
    return [2.5 + 3.0 * (1.0 - 2.5), 2.5 + 3.0 * (4.0 - 2.5)]  # mean 2.5 kept, spread x 3


def test_alie_in_the_loop_sends_one_forged_model_for_every_attacker():
    x = ArrayRecord({"w": Array(A([0.0], np.float32))})
    ups = [_update(0, [1.0]), _update(1, [3.0]), _update(2, [5.0]), _update(3, [7.0])]
    out = attack(ups, x, [2, 3], AttackConfig(kind="alie", clients=2), 1, 0)
    # n = 4, m = 2: s = 3 - 2 = 1, z = Phi^-1(3 / 4) = 0.6745; mean 4, population std sqrt(5)
    forged = 4.0 - 0.6744897502 * math.sqrt(5.0)
    assert [u.arrays["w"].tolist() for u in out[:2]] == [[1.0], [3.0]]
    np.testing.assert_allclose([out[2].arrays["w"][0], out[3].arrays["w"][0]], [forged, forged], rtol=1e-6)


def test_robust_scope_fusion_by_hand():
    # three clients, one layer: (mu, sigma) = (0, 1), (1, 2), (100, 50): an outlier
    scopes = [A([[0.0, 1.0]]), A([[1.0, 2.0]]), A([[100.0, 50.0]])]
    np.testing.assert_array_equal(fuse_scopes(scopes, [1, 1, 1], "median"), [[1.0, 2.0]])
    np.testing.assert_allclose(
        fuse_scopes(scopes, [1, 1, 100], "mean"), [[(1 + 10000) / 102, (1 + 2 + 5000) / 102]]
    )
    # trimmed, 5 clients, trim 0.2: one cut at each end of each moment, the mean of the middle three
    five = np.array([[[0.0, 1.0]], [[1.0, 2.0]], [[2.0, 3.0]], [[3.0, 4.0]], [[100.0, 50.0]]])
    np.testing.assert_allclose(robust_scope(five, "trimmed", 0.2), [[2.0, 3.0]])
    np.testing.assert_allclose(trimmed_mean(np.array([5.0, 1.0, 3.0]), 0.0), 3.0)  # trim 0: the mean
    with pytest.raises(ValueError):
        trimmed_mean(np.array([1.0]), 0.5)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("kind", "poison"),
        ("clients", 2.5),
        ("clients", 11),
        ("scale", 0.0),
        ("noise_std", -1.0),
        ("clients", float("nan")),
        ("clients", float("inf")),
    ],  # the last two: found by tests/test_fuzz.py
)
def test_bad_attack_settings_name_the_key(key, value):
    base = {"kind": "sign_flip", "clients": 2}
    with pytest.raises(ConfigError) as e:
        validate(ExperimentConfig(num_clients=10, attack=AttackConfig(**{**base, key: value})))
    assert e.value.key == f"attack.{key}"
    with pytest.raises(ConfigError, match="needs attackers"):
        validate(ExperimentConfig(attack=AttackConfig(kind="noise")))


def test_label_flip_poisons_the_attacker_s_data_only():
    cfg = validate(ExperimentConfig(num_clients=4, local_steps=2, out_dir="/tmp/unused",
                                    attack=AttackConfig(kind="label_flip", clients=1)))  # fmt: skip
    plain = dataclasses.replace(cfg, attack=AttackConfig())
    [bad] = attackers(cfg)
    good = next(p for p in range(4) if p != bad)
    state = new_model(cfg).state_dict()
    for pid, changed in ((bad, True), (good, False)):
        a, _ = local_round(cfg, pid, state, train_settings(cfg, 1))
        b, _ = local_round(plain, pid, state, train_settings(plain, 1))
        assert (not all(torch.equal(a[k], b[k]) for k in a)) == changed
    # what it trains on: the flipped labels (digits: 10 classes)
    _, y = client_data(cfg, bad)
    assert attacks.flip_labels(y, 10).tolist() != y.tolist()


def test_a_run_says_who_attacked_and_the_attack_reaches_the_model(tmp_path):
    base = dict(num_clients=4, num_rounds=2, local_steps=2, strategy=StrategyConfig("fedwsa"))
    runs = {}
    for name, a in [("clean", AttackConfig()), ("same", AttackConfig(kind="scale", clients=1, scale=1.0)),
                    ("scaled", AttackConfig(kind="scale", clients=1, scale=10.0))]:  # fmt: skip
        cfg = validate(ExperimentConfig(**base, attack=a, out_dir=str(tmp_path / name)))
        run(LocalGrid(cfg), cfg)
        runs[name] = metrics(tmp_path / name)[0]
    doc = json.loads((tmp_path / "scaled" / "metrics.json").read_text())
    assert doc["attack"] == {"kind": "scale", "attackers": attackers(cfg)}
    assert "attack" not in json.loads((tmp_path / "clean" / "metrics.json").read_text())
    assert runs["same"] == runs["clean"]  # a scale of 1 is the honest update, through the whole loop
    assert runs["scaled"][-1]["test_loss"] != runs["clean"][-1]["test_loss"]


def test_a_real_federation_refuses_attacks_in_one_line(tmp_path):
    cmd = [sys.executable, "-m", "experiments.federate", "attack=sign_flip", "attack.clients=1",
           f"hydra.run.dir={tmp_path / 'fed'}"]  # fmt: skip
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1
    assert p.stderr.startswith("error: attack: attackers are simulated")
    assert not (tmp_path / "fed" / "config.json").exists()  # nothing written, nothing started
