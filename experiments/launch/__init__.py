"""What the entry points share: ``preflight`` (check the input, resolve the config, record
it, one-line errors) and ``flower`` (start Flower's processes, submit a run, stream it, stop
everything), on top of ``processes`` (start, watch and stop process trees)."""
