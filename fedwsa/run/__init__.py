"""The run side of fedwsa: the typed config, the wire format, what a client does in a
round, checkpoints, results and reports. It builds on the math in ``fedwsa`` (wsa,
regularizers, train, models, data, partition, robust), which never imports it back."""
