#!/usr/bin/env bash
# The GPU checks of issue #13, as one prepared script for a GPU machine that has Python with
# torch but no flwr, Hydra or Ray, and no registry (the device tool's machines): install the
# carried wheels, put Fashion-MNIST where fedwsa looks first, then
#   1. the CUDA tests (tests/test_device.py: a CUDA round against the CPU, deterministic
#      runs bit for bit, GPU memory flat across rounds),
#   2. python -m experiments.bench gpu --repeat 3 (fedwsa in process vs a plain PyTorch
#      loop, ResNet-18, fp32 and bf16; docs/PERFORMANCE.md 5),
#   3. the README's GPU command, in process: experiments.run dataset=fmnist model=resnet18.
#   4. the same run with deterministic=true, to see what it costs.
# Writes four files to $OUT (default /tmp/gpu-out): log.txt (all of it), gpu.json (the
# benchmark's numbers), run_metrics.json and deterministic_metrics.json. Prepare the carried folder here first
# (bash experiments/bench/gpu_machine/prepare.sh), then through the device tool:
#   run(command="bash experiments/bench/gpu_machine/check.sh", carry=["gpu-carry"], timeout_s=540)
# Dry run on a CPU: PY=/path/to/python3.12 bash experiments/bench/gpu_machine/check.sh
set -uo pipefail
cd "$(dirname "$0")/../../.."
PY=${PY:-python3}
OUT=${OUT:-/tmp/gpu-out}
mkdir -p "$OUT"
LOG="$OUT/log.txt"
source experiments/bench/gpu_machine/setup.sh
step "CUDA tests"
timeout 150 "$PY" -m pytest -q -p no:cacheprovider -rs tests/test_device.py 2>&1 | tail -8 | tee -a "$LOG"
step "bench gpu"
timeout 300 "$PY" -m experiments.bench gpu --repeat 3 2>&1 | tail -25 | tee -a "$LOG"
cp docs/bench/gpu.json "$OUT/gpu.json" 2>/dev/null
step "the README's GPU command, in process"
run=$(mktemp -d)
timeout 120 "$PY" -m experiments.run dataset=fmnist model=resnet18 engine=inprocess num_rounds=2 \
    "hydra.run.dir=$run" 2>&1 | tail -5 | tee -a "$LOG"
cp "$run/metrics.json" "$OUT/run_metrics.json" 2>/dev/null
step "what deterministic=true costs (the same run again, deterministic; README: GPUs)"
det=$(mktemp -d)
timeout 120 "$PY" -m experiments.run dataset=fmnist model=resnet18 engine=inprocess num_rounds=2 \
    deterministic=true "hydra.run.dir=$det" 2>&1 | tail -2 | tee -a "$LOG"
cp "$det/metrics.json" "$OUT/deterministic_metrics.json" 2>/dev/null
"$PY" - "$run/metrics.json" "$det/metrics.json" <<'PY' 2>&1 | tee -a "$LOG"
import json, sys
for name, path in zip(("default", "deterministic"), sys.argv[1:]):
    rows = json.load(open(path))["rounds"][1:]
    print(name, "round_time_s", [round(r["round_time_s"], 2) for r in rows],
          "accuracy", [r["test_accuracy"] for r in rows])
PY
step done
