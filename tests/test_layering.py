"""Imports point one way: experiments -> {strategies, clients} -> fedwsa.run -> fedwsa's math.

Every module of ``fedwsa`` (found by walking the package, so a new one is checked without
being listed here) is imported alone, in a fresh interpreter: for each, the packages it
loads are recorded after forgetting every module of ours and of the forbidden packages
(torch and numpy stay loaded, which keeps this fast)."""

import json
import pkgutil
import subprocess
import sys

import fedwsa

MODULES = sorted(m.name for m in pkgutil.walk_packages(fedwsa.__path__, "fedwsa."))
OUTER = {"flwr", "hydra", "omegaconf", "strategies", "clients", "experiments", "tests"}
PROBE = """
import importlib, json, sys
import numpy, torch
ours = ("fedwsa",) + tuple(sys.argv[2:])
found = {}
for module in sys.argv[1].split(","):
    for m in [m for m in sys.modules if m.split(".")[0] in ours]:
        del sys.modules[m]
    importlib.import_module(module)
    loaded = set(sys.modules)
    run_side = {m for m in loaded if m.startswith("fedwsa.run")}
    found[module] = sorted({m.split(".")[0] for m in loaded} | run_side)
print(json.dumps(found))
"""


def _imports():
    args = [sys.executable, "-c", PROBE, ",".join(MODULES), *sorted(OUTER)]
    return json.loads(subprocess.run(args, capture_output=True, text=True, check=True).stdout)


def test_every_module_is_walked():
    assert {"fedwsa.wsa", "fedwsa.connectivity", "fedwsa.run.config", "fedwsa.run.results"} <= set(MODULES)


def test_core_never_imports_flwr_hydra_or_the_outer_packages_and_the_math_never_the_run_side():
    found = _imports()
    assert set(found) == set(MODULES)
    outer = {m: sorted(OUTER & set(loaded)) for m, loaded in found.items() if OUTER & set(loaded)}
    assert not outer, outer
    math = [m for m in MODULES if not m.startswith("fedwsa.run")]
    run_side = {m: [x for x in found[m] if x.startswith("fedwsa.run")] for m in math}
    assert not any(run_side.values()), run_side
