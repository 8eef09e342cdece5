"""``startup``: time from the command to the first round, and from the last round to exit."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

from experiments.bench.probes import median, run_cli, table


def bench_startup(args: argparse.Namespace) -> dict[str, Any]:
    reps = []
    with tempfile.TemporaryDirectory(prefix="fedwsa-bench-") as tmp:
        for rep in range(args.repeat):
            r = run_cli(["verbose=true"], Path(tmp) / f"default{rep}")
            m = r["marks"]
            last = max((k for k in m if k.startswith("round_")), key=lambda k: int(k.split("_")[1]))
            reps.append({
                "prepared_s": m["prepared"], "superlink_up_s": m.get("superlink_up"),
                "run_submitted_s": m.get("run_submitted"),
                "simulation_started_s": m.get("simulation_started"),
                "to_round_0_s": m["round_0"], "first_round_sent_s": m.get("first_round_sent"),
                "to_round_1_end_s": m["round_1"], "last_round_to_exit_s": m["exit"] - m[last],
                "finished_to_exit_s": m["exit"] - m["finished"], "total_s": m["exit"],
            })  # fmt: skip
            print(reps[-1], flush=True)
    summary = {k: median([r[k] for r in reps]) for k in reps[0]}
    print(table([summary], list(summary)))
    return {"repeat": args.repeat, "reps": reps, "median": summary}
