"""What a ClientApp reads from Flower's context and a train message: the experiment and
the partition it trains on (shared by the app and its privacy mod)."""

from __future__ import annotations

from functools import lru_cache

from flwr.app import Context, Message

from fedwsa.run.config import ExperimentConfig
from fedwsa.run.wire import CONFIG, EXPERIMENT, PARTITION_ID, RUN_CONFIG_KEY


@lru_cache(maxsize=4)
def _config(text: str) -> ExperimentConfig:
    """Parsed and validated once per process (validation builds a model to check it)."""
    return ExperimentConfig.from_json(text)


def experiment(msg: Message, context: Context) -> ExperimentConfig:
    """The run's experiment; only a run that names none (a sweep's Flower run) takes the
    message's."""
    text = context.run_config.get(RUN_CONFIG_KEY) or msg.content[CONFIG].get(EXPERIMENT)  # type: ignore[union-attr]
    if not text:
        raise ValueError(f"neither the run config nor the message holds the experiment ({RUN_CONFIG_KEY})")
    return _config(str(text))


def partition_id(context: Context, msg: Message | None = None) -> int:
    """The partition the server assigned in the message (simulation), else the node's own."""
    if msg is not None and PARTITION_ID in msg.content[CONFIG]:  # type: ignore[operator]
        return int(msg.content[CONFIG][PARTITION_ID])  # type: ignore[arg-type,index]
    return int(context.node_config[PARTITION_ID])
