"""The run side of fedwsa: the typed config, the wire format, the experiment's data and model,
what a client does in a round, checkpoints, and a run's result files (written and read). It
builds on the math in ``fedwsa`` (wsa, regularizers, train, models, data, partition, robust),
which never imports it back. Reports and studies live in ``experiments/``: they never ship
to the nodes."""
