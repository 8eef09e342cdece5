"""Profile a simulation's processes with py-spy: where Flower, Ray and fedwsa spend time.

python -m experiments.profile_run --after-round 1 --seconds 15 -- dataset=fmnist num_clients=10

Runs ``python -m experiments.run <overrides>``; once the given round has finished,
samples every Python process of the run (launcher, SuperLink, simulation process, Ray
actors) with ``py-spy record`` for ``--seconds``, then prints for each process the
functions that were on the stack most often (inclusive: a function counts once per
sample when it or anything it called was running; py-spy's idle filter is not perfect,
so some waiting threads are counted too). Raw collapsed stacks are kept in
``--out`` for flame graphs. Needs ``py-spy`` (``pip install py-spy``; not a dependency
of fedwsa) and permission to trace the processes (root, or ptrace_scope 0). py-spy's own
sampling takes CPU from the run: read shares here, and time with ``experiments.bench``.
"""

from __future__ import annotations

import argparse
import collections
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import psutil

from experiments.launch import PROJECT_DIR

RATE = 100  # samples per second


def frames(stack: str) -> list[str]:
    """``func (file:line)`` frames of one collapsed stack, outermost first, without the
    line numbers (so a function counts once however many lines of it were sampled)."""
    out = []
    for frame in stack.split(";"):
        name, _, where = frame.partition(" (")
        path = where.rstrip(")").rsplit(":", 1)[0].split("site-packages/")[-1]
        out.append(f"{name} ({path})")
    return out


def summarise(raw: Path, top: int) -> dict[str, Any]:
    """Samples and the ``top`` functions by inclusive share in one py-spy raw file."""
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        for f in set(frames(stack)):
            inclusive[f] += n
    return {"samples": total, "top": [(f, n / max(total, 1)) for f, n in inclusive.most_common(top)]}


def label(p: psutil.Process) -> str:
    cmd = " ".join(p.cmdline())
    known = ("ClientAppActor", "flwr-simulation", "flower-superlink", "flower-superexec", "flwr run",
             "experiments.run", "raylet", "gcs_server", "dashboard", "log_monitor", "monitor.py")  # fmt: skip
    for key in known:
        if key in cmd:
            return key
    return p.name()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        prog="python -m experiments.profile_run", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--after-round", type=int, default=1, help="start sampling when this round is done")
    p.add_argument("--seconds", type=float, default=15.0, help="how long to sample")
    p.add_argument("--top", type=int, default=15, help="functions listed per process")
    p.add_argument("--out", default=None, help="folder for the raw stacks and summary.json")
    p.add_argument("overrides", nargs="*", help="experiments.run overrides")
    args = p.parse_args(argv)
    spy = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
    if spy is None:
        raise SystemExit("profile_run: py-spy not found: pip install py-spy")
    out = Path(args.out or tempfile.mkdtemp(prefix="fedwsa-profile-"))
    out.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "experiments.run", f"hydra.run.dir={out / 'run'}", *args.overrides]
    run = subprocess.Popen(cmd, cwd=PROJECT_DIR, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    spies: list[tuple[str, int, subprocess.Popen[bytes]]] = []
    assert run.stdout is not None
    for line in run.stdout:
        print(line, end="", flush=True)
        if not spies and f"round {args.after_round:>3}/" in line:
            procs = [*psutil.Process(run.pid).children(recursive=True), psutil.Process(run.pid)]
            for proc in procs:
                name = label(proc)  # py-spy fails on the non-Python ones (raylet, ...): no file
                target = out / f"{name.replace(' ', '_')}-{proc.pid}.txt"
                spy_cmd = [spy, "record", "--pid", str(proc.pid), "--duration", str(int(args.seconds)),
                           "--rate", str(RATE), "--format", "raw", "--output", str(target),
                           "--nonblocking"]  # fmt: skip
                spy_proc = subprocess.Popen(spy_cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                spies.append((name, proc.pid, spy_proc))
    run.wait()
    for _, _, spy_proc in spies:
        spy_proc.wait()
    if run.returncode != 0:
        raise SystemExit(f"profile_run: the run failed (exit {run.returncode}); its output is above")
    if not spies:
        raise SystemExit(f"profile_run: the run ended before round {args.after_round}: nothing sampled")
    summary = {}
    for name, pid, _ in spies:
        raw = out / f"{name.replace(' ', '_')}-{pid}.txt"
        if not raw.exists():
            continue
        s = summarise(raw, args.top)
        if not s["samples"]:
            continue
        summary[f"{name} ({pid})"] = s
        print(f"\n== {name} (pid {pid}): {s['samples']} stack samples")
        for f, share in s["top"]:
            print(f"  {100 * share:5.1f} %  {f}")
    doc = {"command": cmd, "after_round": args.after_round, "seconds": args.seconds, "rate": RATE,
           "processes": summary}  # fmt: skip
    (out / "summary.json").write_text(json.dumps(doc, indent=1))
    print(f"\nraw stacks and summary.json in {out}")


if __name__ == "__main__":
    main()
