"""The core stays free of flwr and hydra."""

import subprocess
import sys


def test_core_imports_neither_flwr_nor_hydra():
    code = (
        "import sys, fedwsa.wsa, fedwsa.regularizers, fedwsa.train, fedwsa.models, fedwsa.data, "
        "fedwsa.partition, fedwsa.run.config, fedwsa.run.wire, fedwsa.run.client, fedwsa.run.results; "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('flwr', 'hydra', 'omegaconf')); "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
