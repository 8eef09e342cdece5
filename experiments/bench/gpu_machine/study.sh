#!/usr/bin/env bash
# The `vgg11` cells of the WSA study (#15, docs/RESULTS.md) that need a GPU, as one prepared
# script for a GPU machine without flwr, Hydra or a registry (the device tool's machines), to
# run in resumable pieces: install the carried wheels (setup.sh), restore the study's ended
# runs from docs/bench/wsa_where_runs (they are skipped), run the study with --workers
# $WORKERS until $DEADLINE_S seconds have passed, stop it (the running runs stop; only ended
# runs count), and bring back in $OUT (default /tmp/gpu-out):
#   log.txt       everything, with each run's "[study] finished in N s" line
#   runs.tar.gz   the ended runs' results (the --export layout: no models, no checkpoints)
# Cells: the arguments (--only axis=value ...); default every vgg11 cell (--only model=vgg11):
# those ended elsewhere are skipped; the rest run in the study's order. Through the device tool:
#   run(command="bash experiments/bench/gpu_machine/study.sh", carry=["gpu-carry"], timeout_s=570)
# Prepare gpu-carry/ here first (bash experiments/bench/gpu_machine/prepare.sh). Afterwards, here:
#   mkdir -p /tmp/gpu-runs && tar -xzf <files_at>/runs.tar.gz -C /tmp/gpu-runs
#   .venv/bin/python -m experiments.study wsa_where --out /tmp/gpu-runs --export docs/bench/wsa_where_runs
# (adds the runs that had not ended there), then the report as docs/RESULTS.md says.
# Dry run on a CPU: PY=/path/to/python3.12 DEADLINE_S=60 WORKERS=2 bash .../study.sh [--only ...]
set -uo pipefail
cd "$(dirname "$0")/../../.."
PY=${PY:-python3}
OUT=${OUT:-/tmp/gpu-out}
WORKERS=${WORKERS:-12}        # 16 cores there; how many runs fill an H200 is not measured yet
DEADLINE_S=${DEADLINE_S:-450} # then stopping (at most 70 s) and the export fit a 570 s call
mkdir -p "$OUT"
LOG="$OUT/log.txt"
source experiments/bench/gpu_machine/setup.sh
cells=("$@")
[ ${#cells[@]} -gt 0 ] || cells=(--only model=vgg11)
study=$(mktemp -d)/wsa_where
step "study: wsa_where ${cells[*]} --workers $WORKERS, for $DEADLINE_S s"
# its own process group, so that whatever is left after it can be stopped by this PID alone
setsid "$PY" -m experiments.study wsa_where --out "$study" --restore docs/bench/wsa_where_runs \
    --workers "$WORKERS" "${cells[@]}" >>"$LOG" 2>&1 &
pid=$!
for ((t = 0; t < DEADLINE_S; t += 5)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 5
done
if kill -0 "$pid" 2>/dev/null; then
    step "deadline: SIGTERM to the study (drops queued runs, stops running ones after 10 s)"
    kill -TERM "$pid"
fi
wait "$pid"
echo "study exit code $?" | tee -a "$LOG"
kill -KILL -- -"$pid" 2>/dev/null # anything of its group still alive (normally nothing)
step "export"
kept=$(mktemp -d)
"$PY" -m experiments.study wsa_where --out "$study" --export "$kept/runs" 2>&1 | tee -a "$LOG"
tar -czf "$OUT/runs.tar.gz" -C "$kept/runs" . && ls -l "$OUT/runs.tar.gz" | tee -a "$LOG"
step "this piece's runs, and the ended runs per study folder and cell (restored ones included)"
grep -a '^\[study\] \(finished\|failed\|stopped\|running\|absent\) in' "$LOG" | tail -40
find "$kept/runs" -name metrics.json | sed "s|^$kept/runs/||" | cut -d/ -f1,2 | sort | uniq -c | tee -a "$LOG"
step done
