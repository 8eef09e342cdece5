"""The ServerApp: reads the experiment from Flower's run config and runs its rounds
(``strategies.rounds``).

The experiment arrives as JSON in Flower's run config (key ``fedwsa-config``), the same
way in simulation and deployment; without it the ServerApp refuses to start, since it
would not know what to run nor where to write. In a sweep's Flower run (``fedwsa-sweep``:
a job folder) it runs, one after another, every experiment the launcher posts there
(``fedwsa.run.jobs``), on the same virtual nodes and Ray actors.
"""

from __future__ import annotations

import logging
import traceback
from pathlib import Path

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from fedwsa.run.config import ExperimentConfig
from fedwsa.run.jobs import JOB_END, next_job
from fedwsa.run.wire import ENGINE_KEY, RUN_CONFIG_KEY, SWEEP_KEY
from strategies.rounds import RunFailed, run

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    sweep = str(context.run_config.get(SWEEP_KEY, ""))
    if sweep:
        serve_sweep(grid, Path(sweep))
        return
    text = str(context.run_config.get(RUN_CONFIG_KEY, ""))
    if not text:
        raise ValueError(f"the run config has no {RUN_CONFIG_KEY}: launch with `python -m experiments.run`")
    cfg = experiment(text)
    engine = str(context.run_config.get(ENGINE_KEY, ""))
    run(grid, cfg, assign=engine == "simulation", fresh_noise=engine == "deployment")


def experiment(text: str) -> ExperimentConfig:
    cfg = ExperimentConfig.from_json(text)
    if not cfg.out_dir:
        raise ValueError("out_dir is empty: launch with `python -m experiments.run` (or set it)")
    logging.getLogger("flwr").setLevel(logging.INFO if cfg.verbose else logging.WARNING)
    return cfg


def serve_sweep(grid: Grid, folder: Path) -> None:
    """Run each job posted in ``folder`` (simulation: partitions travel in the messages, and
    so does the experiment); one job's failure is reported in its log and results, and the
    next job runs."""
    n = 0
    while (text := next_job(folder, n)) is not None:
        try:
            run(grid, experiment(text), assign=True, carry_experiment=True)
        except RunFailed as e:  # already recorded in the run's metrics.json
            print(f"ERROR: {e}", flush=True)
        except Exception:  # a bug in one run must not take the sweep's other runs with it
            print(f"ERROR: the ServerApp raised\n{traceback.format_exc()}", flush=True)
        print(f"{JOB_END}{n}", flush=True)
        n += 1
