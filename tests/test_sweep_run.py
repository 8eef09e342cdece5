"""A sweep's runs on one Flower run (issue #13 §5): the ServerApp runs every experiment
posted to its job folder, one after another, on the same nodes; the clients take the
experiment from the messages. Results equal separate runs; a failing job does not take
the next with it. The real sweep, on Flower and Ray: tests/test_batch_cluster.py."""

import pathlib
import threading

import torch
from flwr.app import Context, RecordDict

from experiments.launch.inprocess import InProcessGrid
from fedwsa.run import jobs
from fedwsa.run.config import ExperimentConfig, StrategyConfig, validate
from strategies.rounds import run
from strategies.server_app import serve_sweep
from tests.helpers import metrics, placeless


class SweepGrid(InProcessGrid):
    """The in-process grid as a sweep's Flower run sees it: its run config names no experiment."""

    def context(self, node: int) -> Context:
        ctx = super().context(node)
        return Context(run_id=1, node_id=node, state=RecordDict(), node_config=ctx.node_config, run_config={})


def _cfg(tmp_path, name, **kw):
    base = dict(num_clients=4, num_rounds=2, fraction_train=0.5, out_dir=str(tmp_path / name))
    return validate(ExperimentConfig(**{**base, **kw}))


def test_job_folder_protocol(tmp_path):
    jobs.post(tmp_path, 0, '{"a": 1}')
    assert jobs.next_job(tmp_path, 0) == '{"a": 1}'
    got: list[str | None] = []
    waiter = threading.Thread(target=lambda: got.append(jobs.next_job(tmp_path, 1)))
    waiter.start()  # waits for job 1 ...
    jobs.stop(tmp_path)  # ... until the sweep says no job follows
    waiter.join(5)
    assert got == [None] and not list(tmp_path.glob("*.tmp"))


def test_serve_sweep_runs_each_job_as_a_separate_run_would(tmp_path, capsys):
    wsa = _cfg(tmp_path, "wsa", strategy=StrategyConfig(name="fedwsa", wsa_lambda=1.0))
    avg = _cfg(tmp_path, "avg", seed=3, num_clients=5)
    (tmp_path / "file").write_text("")
    broken = _cfg(tmp_path, "broken", out_dir=str(tmp_path / "file" / "run"))  # cannot be written
    folder = tmp_path / "jobs"
    folder.mkdir()
    for n, cfg in enumerate([wsa, broken, avg]):
        jobs.post(folder, n, cfg.to_json())
    jobs.stop(folder)
    serve_sweep(SweepGrid(wsa), folder)  # type: ignore[arg-type]  # one grid, one pool, for all jobs
    out = capsys.readouterr().out
    assert [ln for ln in out.splitlines() if ln.startswith(jobs.JOB_END)] == [
        f"{jobs.JOB_END}{n}" for n in range(3)
    ]
    assert "ERROR: the ServerApp raised" in out  # the broken job, reported, and the next one ran
    for cfg in (wsa, avg):  # each job = the same experiment run alone
        alone = _cfg(tmp_path, f"alone-{pathlib.Path(cfg.out_dir).name}", **{
            k: getattr(cfg, k) for k in ("strategy", "seed", "num_clients")})  # fmt: skip
        run(InProcessGrid(alone), alone, assign=True)  # type: ignore[arg-type]
        assert metrics(pathlib.Path(cfg.out_dir))[1] == "finished"
        assert placeless(metrics(pathlib.Path(cfg.out_dir))[0]) == placeless(
            metrics(pathlib.Path(alone.out_dir))[0]
        )
        a = torch.load(pathlib.Path(cfg.out_dir) / "model.pt", weights_only=True)
        b = torch.load(pathlib.Path(alone.out_dir) / "model.pt", weights_only=True)
        assert all(torch.equal(a[k], b[k]) for k in a)
