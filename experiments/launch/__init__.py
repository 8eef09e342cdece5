"""What the entry points share, one module per job:

- ``preflight``: check the input, resolve the config, record it, one-line errors;
- ``superlink``: Flower's processes (SuperLink, SuperNodes) and connections;
- ``submit``: the staged Flower app, ``flwr run``, following its output;
- ``resources``: this job's CPUs and GPUs and what each simulated client asks Ray for;
- ``simulation``, ``sweep_session``, ``deployment``, ``inprocess``: the four ways to run;
- ``nodekeys``: SuperNode key pairs and their registration;
- ``processes``: start, watch and stop process trees, free ports, interrupts.
"""

from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parents[2]
"""The project's root: the Flower app's files are staged from here."""
