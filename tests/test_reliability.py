"""Checkpoints and resume, faulty clients, write failures: the real server loop on an
in-process grid (tests/inprocess.py), digits, a few seconds in all."""

import dataclasses
import errno
import json
import pathlib

import numpy as np
import pytest
import torch

from experiments.launch.inprocess import InProcessGrid
from fedwsa.robust import clip_updates
from fedwsa.run import checkpoint, results
from fedwsa.run.checkpoint import Checkpoint, CheckpointError
from fedwsa.run.config import ConfigError, ExperimentConfig, StrategyConfig, validate
from fedwsa.run.factory import new_model
from fedwsa.run.local_round import local_round, train_settings
from fedwsa.wsa import encode_wsa, model_scope, next_target, scope_of_arrays, scoped_names
from strategies.rounds import RunFailed, run
from tests.faults import KINDS
from tests.helpers import metrics, placeless
from tests.inprocess import Crash, LocalGrid


def _cfg(tmp_path, name, **kw):
    base = dict(
        num_clients=4, num_rounds=4, fraction_train=0.5, out_dir=str(tmp_path / name),
        strategy=StrategyConfig(name="fedwsa", wsa_lambda=1.0),
    )  # fmt: skip
    return validate(ExperimentConfig(**{**base, **kw}))


def _rows(cfg):
    """Rows without the timing columns (tests.helpers.metrics) and the whole metrics.json."""
    out = pathlib.Path(cfg.out_dir)
    return metrics(out)[0], json.loads((out / "metrics.json").read_text())


def _model(cfg):
    return torch.load(pathlib.Path(cfg.out_dir) / "model.pt", weights_only=True)


# --- checkpoint files -----------------------------------------------------------------


def _ckpt(r, config="c"):
    params = {"w": torch.full((2,), float(r))}
    return Checkpoint(r, params, config, {"target": [[0.0, 1.0]]}, {}, {"rows": []})


def test_checkpoints_keep_two_and_fall_back_on_corruption(tmp_path):
    for r in (1, 2, 3):
        checkpoint.save(tmp_path, _ckpt(r))
    files = sorted(p.name for p in checkpoint.folder(tmp_path).iterdir())
    assert files == ["round-00002.ckpt", "round-00003.ckpt"]  # the newest two, no temporary files
    ckpt, problems = checkpoint.load_latest(tmp_path, "c")
    assert ckpt.round == 3 and problems == [] and ckpt.params["w"].tolist() == [3.0, 3.0]

    newest = checkpoint.folder(tmp_path) / "round-00003.ckpt"
    data = bytearray(newest.read_bytes())
    data[-10] ^= 0xFF  # one flipped bit in the payload
    newest.write_bytes(bytes(data))
    ckpt, problems = checkpoint.load_latest(tmp_path, "c")
    assert ckpt.round == 2 and len(problems) == 1 and "checksum" in problems[0]

    older = checkpoint.folder(tmp_path) / "round-00002.ckpt"
    older.write_bytes(older.read_bytes()[:100])  # truncated
    ckpt, problems = checkpoint.load_latest(tmp_path, "c")
    assert ckpt is None and len(problems) == 2

    newest.write_bytes(b"something else\n")
    with pytest.raises(CheckpointError, match="not a fedwsa checkpoint"):
        checkpoint.decode(newest.read_bytes())


def test_checkpoint_of_other_settings_is_refused(tmp_path):
    checkpoint.save(tmp_path, _ckpt(1, config="a"))
    with pytest.raises(CheckpointError, match="other settings"):
        checkpoint.load_latest(tmp_path, "b")


def test_failed_checkpoint_write_keeps_the_previous_one(tmp_path, monkeypatch):
    checkpoint.save(tmp_path, _ckpt(1))

    def disk_full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(results.os, "fsync", disk_full)  # the one atomic writer, with fsync
    with pytest.raises(OSError, match="No space"):
        checkpoint.save(tmp_path, _ckpt(2))
    assert [p.name for p in checkpoint.folder(tmp_path).iterdir()] == ["round-00001.ckpt"]
    assert checkpoint.load_latest(tmp_path, "c")[0].round == 1


# --- resume ---------------------------------------------------------------------------


@pytest.mark.parametrize(("crash_in", "every", "resumes_after"), [(3, 1, 2), (4, 2, 2)])
def test_crash_mid_round_then_resume_gives_the_same_run(tmp_path, crash_in, every, resumes_after, capsys):
    whole = _cfg(tmp_path, "whole", checkpoint_every=every)
    run(LocalGrid(whole), whole)

    cut = _cfg(tmp_path, "cut", checkpoint_every=every)
    with pytest.raises(Crash):
        run(LocalGrid(cut, crash_in_round=crash_in), cut)
    assert _rows(cut)[1]["status"] == "running"
    resumed = dataclasses.replace(cut, resume=True)
    run(LocalGrid(resumed), resumed)
    assert f"resumed after round {resumes_after}" in capsys.readouterr().out

    assert _rows(resumed)[0] == _rows(whole)[0]  # every round's metrics, bit for bit
    assert _rows(resumed)[1]["status"] == "finished"
    a, b = _model(whole), _model(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)
    sampled = [r["clients"] for r in _rows(whole)[0][1:]]
    assert len({tuple(c) for c in sampled}) > 1  # the sampler's state was restored, not restarted


def test_resume_skips_a_corrupted_newest_checkpoint(tmp_path, capsys):
    whole = _cfg(tmp_path, "whole")
    run(LocalGrid(whole), whole)
    cut = _cfg(tmp_path, "cut")
    with pytest.raises(Crash):
        run(LocalGrid(cut, crash_in_round=4), cut)
    newest = checkpoint.folder(cut.out_dir) / "round-00003.ckpt"
    newest.write_bytes(newest.read_bytes()[:-50])
    resumed = dataclasses.replace(cut, resume=True)
    run(LocalGrid(resumed), resumed)
    out = capsys.readouterr().out
    assert "truncated or corrupted" in out and "resumed after round 2" in out
    assert _rows(resumed)[0] == _rows(whole)[0]


def test_disk_full_stops_with_a_clear_error_and_resume_completes(tmp_path, monkeypatch):
    whole = _cfg(tmp_path, "whole")
    run(LocalGrid(whole), whole)
    cut = _cfg(tmp_path, "cut")
    real = results.write_synced
    writes = {"n": 0}

    def filling(path, data):
        if path.name.startswith("metrics.json.") and path.suffix == ".tmp":
            writes["n"] += 1
            if writes["n"] >= 4:  # from round 3's row on, the disk is full
                real(path, data[: len(data) // 2])
                raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, data)

    monkeypatch.setattr(results, "write_synced", filling)
    with pytest.raises(
        RunFailed, match=r"No space left on device.*round 2 are intact: rerun with resume=true"
    ):
        run(LocalGrid(cut), cut)
    monkeypatch.setattr(results, "write_synced", real)
    out = pathlib.Path(cut.out_dir)
    assert not list(out.glob("*.tmp"))  # no half-written file left behind
    rows, doc = _rows(cut)
    assert [r["round"] for r in rows] == [0, 1, 2] and doc["status"] == "running"  # earlier rows kept
    resumed = dataclasses.replace(cut, resume=True)
    run(LocalGrid(resumed), resumed)
    assert _rows(resumed)[0] == _rows(whole)[0]


# --- faulty clients -------------------------------------------------------------------


def _expected_round_one(cfg, good, clip=0.0):
    """FedAvg of the ``good`` clients' first round, and FedWSA's next target, by hand;
    ``clip``: their updates clipped first (``update_clip``)."""
    model = new_model(cfg)
    names = scoped_names(model)
    start = model.state_dict()
    knobs = encode_wsa(
        cfg.strategy.get("wsa_lambda"), "kl", False, model_scope(model, names)
    )  # as FedWSA sends
    settings = train_settings(cfg, 1, knobs)
    results = [local_round(cfg, pid, start, settings) for pid in good]
    if clip:
        base = {k: v.numpy() for k, v in start.items()}
        clipped, _ = clip_updates([{k: v.numpy() for k, v in s.items()} for s, _ in results], base, clip)
        results = [
            ({k: torch.from_numpy(v) for k, v in c.items()}, r)
            for c, (_, r) in zip(clipped, results, strict=True)
        ]
    n = np.array([r.num_examples for _, r in results], dtype=np.float64)
    avg = {k: sum(s[k].double() * w for (s, _), w in zip(results, n / n.sum(), strict=True)) for k in start}
    scopes = [scope_of_arrays({k: v.numpy() for k, v in s.items()}, names) for s, _ in results]
    model.load_state_dict({k: v.float() for k, v in avg.items()})
    target = next_target("mean", scopes, n.tolist(), model_scope(model, names))
    return avg, target


@pytest.mark.parametrize("kind", KINDS)
def test_faulty_client_never_reaches_the_global_model(tmp_path, kind, capsys):
    cfg = _cfg(tmp_path, kind, num_clients=3, num_rounds=1, fraction_train=1.0)
    run(LocalGrid(cfg, faults=f"1:{kind}"), cfg)
    rows, doc = _rows(cfg)
    assert doc["status"] == "finished"
    assert rows[1]["clients"] == [0, 2] and rows[1]["failed_clients"] == [1] and rows[1]["num_failures"] == 1
    assert "client 1 failed" in capsys.readouterr().out
    avg, target = _expected_round_one(cfg, good=[0, 2])
    got = _model(cfg)
    for k in avg:
        np.testing.assert_allclose(got[k].double(), avg[k], rtol=1e-5, atol=1e-6)
    ckpt, _ = checkpoint.load_latest(cfg.out_dir)
    np.testing.assert_allclose(ckpt.strategy["target"], target, rtol=1e-5)


def test_too_many_failed_rounds_stop_the_run(tmp_path):
    cfg = _cfg(tmp_path, "allfail", num_rounds=6, max_failed_rounds=2)
    with pytest.raises(RunFailed, match=r"2 rounds in a row .*max_failed_rounds=2"):
        run(LocalGrid(cfg, faults="all:raise"), cfg)
    rows, doc = _rows(cfg)
    assert doc["status"] == "failed" and "max_failed_rounds" in doc["error"]
    assert [r["num_replies"] for r in rows] == [None, 0, 0]
    start = new_model(cfg).state_dict()
    assert all(torch.equal(start[k], v) for k, v in checkpoint.load_latest(cfg.out_dir)[0].params.items())


def test_round_with_fewer_than_min_fit_clients_is_skipped(tmp_path):
    cfg = _cfg(tmp_path, "few", num_clients=3, num_rounds=2, fraction_train=1.0, min_fit_clients=3)
    run(LocalGrid(cfg, faults="0:raise"), cfg)  # two skipped rounds < max_failed_rounds=3: the run goes on
    rows, doc = _rows(cfg)
    assert doc["status"] == "finished" and [r["num_replies"] for r in rows[1:]] == [0, 0]
    assert rows[1]["failed_clients"] == [0]  # the two good replies were not enough, so unused
    assert rows[0]["test_accuracy"] == rows[1]["test_accuracy"] == rows[2]["test_accuracy"]


# --- outlier clipping -----------------------------------------------------------------


def test_clip_updates_by_hand():
    base = {"w": np.zeros(2, np.float32), "n": np.array([5])}
    clients = [{"w": np.array([3.0, 4.0], np.float32), "n": np.array([7])},
               {"w": np.array([0.0, 1.0], np.float32), "n": np.array([7])},
               {"w": np.array([0.0, 2.0], np.float32), "n": np.array([7])}]  # fmt: skip
    out, scales = clip_updates(clients, base, factor=1.5)
    # norms 5, 1, 2; median 2; limit 3: the first update is scaled by 3/5
    assert scales == [pytest.approx(0.6), 1.0, 1.0]
    np.testing.assert_allclose(out[0]["w"], [1.8, 2.4], rtol=1e-6)
    assert out[0]["n"].tolist() == [7] and out[1] is clients[1]


def test_clipping_in_the_loop_runs(tmp_path, capsys):
    cfg = _cfg(tmp_path, "clip", num_rounds=2, update_clip=1.0, fraction_train=1.0)
    run(LocalGrid(cfg), cfg)
    assert "clipped updates" in capsys.readouterr().out  # factor 1: everything above the median
    assert _rows(cfg)[1]["status"] == "finished"


def test_clipped_clients_reach_the_target_scope_only_clipped(tmp_path):
    """FedWSA fuses the scopes of the parameters it averages: those of the clipped update,
    not those the client trained (main fused the client's own unclipped scope)."""
    cfg = _cfg(tmp_path, "clipscope", num_rounds=1, update_clip=1.0, fraction_train=1.0)
    run(LocalGrid(cfg), cfg)
    avg, target = _expected_round_one(cfg, good=range(cfg.num_clients), clip=1.0)
    _, unclipped = _expected_round_one(cfg, good=range(cfg.num_clients))
    ckpt, _ = checkpoint.load_latest(cfg.out_dir)
    np.testing.assert_allclose(ckpt.strategy["target"], target, rtol=1e-6)
    assert not np.allclose(ckpt.strategy["target"], unclipped, rtol=1e-6)
    for k, v in _model(cfg).items():
        np.testing.assert_allclose(v.double(), avg[k], rtol=1e-5, atol=1e-6)


def test_plain_loop_of_the_overhead_benchmark_does_the_same_work(tmp_path):
    """experiments.bench overhead compares against this loop: it must compute the same run."""
    from experiments.bench.overhead import plain_federation

    cfg = _cfg(tmp_path, "plain", num_clients=3, num_rounds=2, fraction_train=1.0,
               strategy=StrategyConfig(name="fedavg"))  # fmt: skip
    run(LocalGrid(cfg), cfg)
    for shuffle in (None, 5):  # clients handed out in partition order, or in a random one
        plain = plain_federation(cfg, workers=2, shuffle_seed=shuffle)
        assert [r["test_accuracy"] for r in plain["rows"]] == [r["test_accuracy"] for r in _rows(cfg)[0][1:]]
        assert [r["test_loss"] for r in plain["rows"]] == [r["test_loss"] for r in _rows(cfg)[0][1:]]


def test_plain_loop_of_the_clients_benchmark_does_the_same_work(tmp_path):
    """experiments.bench clients compares against this loop: the same sampled clients (4 of 20
    a round, Synthetic data), batches, averaging and evaluation as the server loop, to the bit."""
    from experiments.bench.clients import plain_loop
    from experiments.bench.probes import compose_run

    args = [
        "dataset=synthetic",
        "num_clients=20",
        "fraction_train=0.2",
        "num_rounds=2",
        "lr=0.01",
        "strategy=fedavg",
    ]
    cfg = compose_run(args, tmp_path / "server")
    run(InProcessGrid(cfg), cfg, assign=True)
    plain = plain_loop(args)
    assert [r["test_accuracy"] for r in plain] == [r["test_accuracy"] for r in _rows(cfg)[0][1:]]
    assert [r["test_loss"] for r in plain] == [r["test_loss"] for r in _rows(cfg)[0][1:]]
    with pytest.raises(ValueError, match="FedAvg only"):
        plain_loop([*args, "strategy=fedwsa"])


def test_simulation_assigns_partitions_without_asking_and_gets_the_same_run(tmp_path):
    """In simulation (assign=True) no node is queried and nodes train the partition the
    message names, whatever their own config says: the run is the same as when asked."""
    asked = _cfg(tmp_path, "asked", num_rounds=2)
    run(grid := LocalGrid(asked), asked)
    assert grid.queries == asked.num_clients
    assigned = _cfg(tmp_path, "assigned", num_rounds=2)
    run(grid := LocalGrid(assigned, shuffled=True), assigned, assign=True)
    assert grid.queries == 0
    assert placeless(_rows(assigned)[0]) == placeless(_rows(asked)[0])


def test_a_pool_of_nodes_smaller_than_the_clients_gives_the_same_run(tmp_path):
    """Clients are not nodes: 8 clients, 2 sampled per round, on the 2 virtual nodes of the
    pool (engine=inprocess's grid), each round's partitions named in the messages: the same
    rows as 8 nodes that each hold their partition and are asked for it."""
    asked = _cfg(tmp_path, "asked", num_clients=8, fraction_train=0.25, num_rounds=3)
    run(LocalGrid(asked), asked)
    pooled = _cfg(tmp_path, "pooled", num_clients=8, fraction_train=0.25, num_rounds=3)
    grid = InProcessGrid(pooled)
    assert len(grid.nodes) == pooled.node_pool == 2
    run(grid, pooled, assign=True)  # type: ignore[arg-type]
    rows = _rows(pooled)[0]
    assert placeless(rows) == placeless(_rows(asked)[0])
    assert len({c for r in rows[1:] for c in r["clients"]}) > 2  # more clients than nodes trained
    assert {n for r in rows[1:] for n in r["client_nodes"]} == {"1000", "1007"}  # the pool's two nodes
    with pytest.raises(ConfigError, match="sim_nodes: 1 virtual nodes cannot take the 2 clients"):
        validate(dataclasses.replace(pooled, sim_nodes=1))
