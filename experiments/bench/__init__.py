"""Performance benchmarks, one module per benchmark: ``python -m experiments.bench <name>``
(see ``__main__``) and ``python -m experiments.bench.federation``."""
