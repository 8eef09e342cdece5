"""One module per algorithm (its settings, its strategy, its state); the list of them is
``strategies.registry``. Algorithms that change local training also have a core module with
their client term (``fedwsa.fedprox``, ``fedwsa.wsa``, ``fedwsa.scaffold``, ``fedwsa.feddyn``,
``fedwsa.moon``)."""
