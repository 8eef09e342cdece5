"""The ServerApp: reads the experiment from Flower's run config and runs its rounds
(``strategies.rounds``).

The experiment arrives as JSON in Flower's run config (key ``fedwsa-config``), the same
way in simulation and deployment; without it the ServerApp refuses to start, since it
would not know what to run nor where to write.
"""

from __future__ import annotations

import logging

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from fedwsa.run.config import ExperimentConfig
from fedwsa.run.wire import ENGINE_KEY, RUN_CONFIG_KEY
from strategies.rounds import run

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    text = str(context.run_config.get(RUN_CONFIG_KEY, ""))
    if not text:
        raise ValueError(f"the run config has no {RUN_CONFIG_KEY}: launch with `python -m experiments.run`")
    cfg = ExperimentConfig.from_json(text)
    if not cfg.out_dir:
        raise ValueError("out_dir is empty: launch with `python -m experiments.run` (or set it)")
    logging.getLogger("flwr").setLevel(logging.INFO if cfg.verbose else logging.WARNING)
    run(grid, cfg, assign=str(context.run_config.get(ENGINE_KEY, "")) == "simulation")
