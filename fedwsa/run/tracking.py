"""Experiment trackers: TensorBoard, Weights & Biases, MLflow (each an optional extra).

Server side only, beside ``metrics.json`` (which stays the record): each round's row and
scopes, the resolved config as hyperparameters, the final metrics and the model. A tracker
never fails a run: its first error is printed once, that tracker stops, the run goes on.
A resumed run continues the same tracked run (the ids are kept in
``<out_dir>/tracking.json``): TensorBoard purges the steps after the checkpoint, MLflow and
W&B reopen their run by id (W&B offline writes a new folder for the same run id; ``wandb
sync`` merges them).
"""

from __future__ import annotations

import importlib.util
import json
import os
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from fedwsa.run.config import ExperimentConfig
from fedwsa.run.results import atomic_write

# tracker -> (module that must import, the extra that installs it)
NEEDS = {
    "tensorboard": ("tensorboard", "tensorboard"),
    "wandb": ("wandb", "wandb"),
    "mlflow": ("mlflow", "mlflow"),
}


def missing_extras(exp: ExperimentConfig) -> list[tuple[str, str]]:
    """(tracker, extra) for each tracker asked for whose library is not installed."""
    return [
        (name, NEEDS[name][1])
        for name in exp.tracking.enabled()
        if importlib.util.find_spec(NEEDS[name][0]) is None
    ]


def flat_config(exp: ExperimentConfig) -> dict[str, Any]:
    """The resolved config as flat ``a.b`` keys (hyperparameters), tracking itself left out."""

    def walk(d: dict[str, Any], prefix: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(walk(v, f"{prefix}{k}.") if isinstance(v, dict) else {prefix + k: v})
        return out

    d = exp.as_dict()
    d.pop("tracking")
    return walk(d, "")


def round_metrics(row: dict[str, Any], scopes: dict[str, Any], layers: Sequence[str]) -> dict[str, float]:
    """What each tracker logs for one round (``row`` and ``scopes`` as in metrics.json and
    scopes.json): accuracy, losses, replies, failures, round time; per scoped layer the
    global and target scope and the clients' sigma (mean and std over clients)."""
    m: dict[str, float] = {
        "test/accuracy": float(row["test_accuracy"]),
        "test/loss": float(row["test_loss"]),
        "clients/failures": float(row.get("num_failures") or 0),
        "time/round_s": float(row.get("round_time_s") or 0.0),
    }
    if row.get("train_loss") is not None:
        m["train/loss"] = float(row["train_loss"])
    if row.get("num_replies") is not None:
        m["clients/replies"] = float(row["num_replies"])
    for j, layer in enumerate(layers):
        m[f"scope/{layer}/global_mu"], m[f"scope/{layer}/global_sigma"] = map(float, scopes["global"][j])
        if scopes.get("target"):
            m[f"scope/{layer}/target_mu"], m[f"scope/{layer}/target_sigma"] = map(float, scopes["target"][j])
        if "client_sigma_std" in scopes:
            m[f"scope/{layer}/client_sigma_mean"] = float(scopes["client_sigma_mean"][j])
            m[f"scope/{layer}/client_sigma_std"] = float(scopes["client_sigma_std"][j])
    return m


def final_metrics(rows: list[dict[str, Any]]) -> dict[str, float]:
    acc, last = [float(r["test_accuracy"]) for r in rows], rows[-1]
    return {
        "final/accuracy": acc[-1], "final/best_accuracy": max(acc), "final/loss": float(last["test_loss"]),
        "final/rounds": float(last["round"]), "final/elapsed_s": float(last.get("elapsed_s") or 0),
    }  # fmt: skip


class Tensorboard:
    def __init__(self, exp: ExperimentConfig, ids: dict[str, Any], resumed: int | None) -> None:
        from torch.utils.tensorboard import SummaryWriter
        from torch.utils.tensorboard.summary import hparams

        log_dir = exp.tracking.tensorboard.log_dir or str(Path(exp.out_dir) / "tensorboard")
        # a resumed run: TensorBoard drops what the first attempt logged after the checkpoint
        self.w = SummaryWriter(log_dir, purge_step=None if resumed is None else resumed + 1)
        if resumed is None:
            params = {
                k: v if isinstance(v, int | float | str | bool) else str(v)
                for k, v in flat_config(exp).items()
            }
            exp_s, ssi, sei = hparams(params, {"test/accuracy": 0.0, "final/accuracy": 0.0})
            fw = self.w._get_file_writer()
            for s in (exp_s, ssi, sei):
                fw.add_summary(s)

    def log(self, step: int, metrics: dict[str, float]) -> None:
        for k, v in metrics.items():
            self.w.add_scalar(k, v, step)
        self.w.flush()

    def finish(self, final: dict[str, float], model: Path, step: int) -> None:
        self.log(step, final)
        self.w.close()

    def fail(self, error: str) -> None:
        self.w.close()


class Wandb:
    def __init__(self, exp: ExperimentConfig, ids: dict[str, Any], resumed: int | None) -> None:
        import wandb

        c = exp.tracking.wandb
        self.wandb = wandb
        ids.setdefault("wandb_id", uuid.uuid4().hex[:8])
        settings = wandb.Settings(console="off", silent=True, x_disable_stats=True)
        mode: Any = c.mode  # offline | online (checked by the config)
        self.run = wandb.init(project=c.project, entity=c.entity or None, mode=mode, dir=c.dir or exp.out_dir,
                              id=ids["wandb_id"], resume="allow", name=Path(exp.out_dir).name,
                              config=flat_config(exp), settings=settings, reinit="create_new")  # fmt: skip

    def log(self, step: int, metrics: dict[str, float]) -> None:
        self.run.log(metrics, step=step)

    def finish(self, final: dict[str, float], model: Path, step: int) -> None:
        self.run.summary.update(final)
        if model.exists():
            art = self.wandb.Artifact(f"model-{self.run.id}", type="model")
            art.add_file(str(model))
            self.run.log_artifact(art)
        self.run.finish()

    def fail(self, error: str) -> None:
        self.run.finish(exit_code=1)


def mlflow_uri(uri: str) -> str:
    """The tracking URI: empty means ``sqlite:///<cwd>/mlflow.db`` (MLflow 3's default store,
    a local file; its ``./mlruns`` file store is in maintenance mode and refused unless
    opted in, which an explicit ``file:`` URI does here)."""
    return uri or f"sqlite:///{Path.cwd() / 'mlflow.db'}"


class Mlflow:
    def __init__(self, exp: ExperimentConfig, ids: dict[str, Any], resumed: int | None) -> None:
        uri = mlflow_uri(exp.tracking.mlflow.uri)
        if uri.startswith("file:") or "://" not in uri:
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")  # the user asked for a file store
        from mlflow.entities import Metric, Param, RunStatus
        from mlflow.tracking import MlflowClient

        self.Metric, self.RunStatus = Metric, RunStatus
        self.client = MlflowClient(uri)
        self.pending: list[Any] = []
        if "mlflow_run_id" not in ids:
            name = exp.tracking.mlflow.experiment
            found = self.client.get_experiment_by_name(name)
            if found is not None:
                exp_id = found.experiment_id
            else:
                art = None
                if uri.startswith("sqlite:///"):  # artifacts beside the database, not in the cwd
                    art = (Path(uri.removeprefix("sqlite:///")).parent / "mlartifacts").as_uri()
                exp_id = self.client.create_experiment(name, artifact_location=art)
            run = self.client.create_run(
                exp_id, run_name=Path(exp.out_dir).name, tags={"out_dir": exp.out_dir}
            )
            ids["mlflow_run_id"] = run.info.run_id
            params = [Param(k[:250], str(v)[:6000]) for k, v in flat_config(exp).items()]
            for i in range(0, len(params), 100):
                self.client.log_batch(run.info.run_id, params=params[i : i + 100])
        self.run_id = ids["mlflow_run_id"]
        if resumed is not None:
            self.client.update_run(self.run_id, status="RUNNING")

    def log(self, step: int, metrics: dict[str, float]) -> None:
        """Asynchronous: a synchronous batch costs ~20 ms a round on SQLite (bench tracking)."""
        ts = int(time.time() * 1000)
        batch = [self.Metric(k, v, ts, step) for k, v in metrics.items()]
        self.pending.append(self.client.log_batch(self.run_id, metrics=batch, synchronous=False))

    def _wait(self) -> None:
        for op in self.pending:
            op.wait()
        self.pending.clear()

    def finish(self, final: dict[str, float], model: Path, step: int) -> None:
        self.log(step, final)
        self._wait()
        if model.exists():
            self.client.log_artifact(self.run_id, str(model))
        self.client.set_terminated(self.run_id, "FINISHED")

    def fail(self, error: str) -> None:
        self._wait()
        self.client.set_terminated(self.run_id, "FAILED")


BACKENDS: dict[str, Callable[[ExperimentConfig, dict[str, Any], int | None], Any]] = {
    "tensorboard": Tensorboard, "wandb": Wandb, "mlflow": Mlflow,
}  # fmt: skip


class Trackers:
    """The trackers a run asked for; every call guarded (see the module's docstring)."""

    def __init__(
        self, exp: ExperimentConfig | None, layers: Sequence[str], resumed: int | None = None
    ) -> None:
        """``exp`` None: no trackers (before the run knows whether it resumes)."""
        self.layers = list(layers)
        self.active: dict[str, Any] = {}
        self.seconds = 0.0  # time spent in the trackers' per-round logging (bench tracking)
        if exp is None:
            return
        names = exp.tracking.enabled()
        if not names:
            return
        self.ids_path = Path(exp.out_dir) / "tracking.json"
        try:
            ids = json.loads(self.ids_path.read_text()) if resumed is not None else {}
        except (OSError, ValueError):
            ids = {}
        for name in names:
            self._guard(name, self._start, name, exp, ids, resumed)
        if self.active:
            atomic_write(self.ids_path, json.dumps(ids, indent=1))

    def _guard(self, name: str, call: Callable[..., Any], *args: Any) -> None:
        try:
            call(*args)
        except Exception as e:  # any tracker failure: reported once, never fails the run
            self.active.pop(name, None)
            first = (str(e).splitlines() or [""])[0][:300]
            print(f"[fedwsa] warning: tracker {name} failed ({type(e).__name__}: {first}); "
                  f"tracking with {name} stopped, the run goes on", flush=True)  # fmt: skip

    def _start(self, name: str, exp: ExperimentConfig, ids: dict[str, Any], resumed: int | None) -> None:
        self.active[name] = BACKENDS[name](exp, ids, resumed)

    def round(self, row: dict[str, Any], scopes: dict[str, Any]) -> None:
        if not self.active:
            return
        t0 = time.perf_counter()
        metrics = round_metrics(row, scopes, self.layers)
        for name, t in list(self.active.items()):
            self._guard(name, t.log, int(row["round"]), metrics)
        self.seconds += time.perf_counter() - t0

    def finish(self, rows: list[dict[str, Any]], model: Path) -> None:
        final = final_metrics(rows)
        for name, t in list(self.active.items()):
            self._guard(name, t.finish, final, model, int(rows[-1]["round"]))
        self.active.clear()

    def fail(self, error: str) -> None:
        for name, t in list(self.active.items()):
            self._guard(name, t.fail, error)
        self.active.clear()
