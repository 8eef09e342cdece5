"""Performance benchmarks: ``python -m experiments.bench <name> [options]``.

Each prints a table and writes JSON (``--out``, default ``docs/bench/<name>.json``).
Variants are interleaved within one invocation and repeated; medians and ratios are
reported. Results and commands are collected in ``docs/PERFORMANCE.md``.

- ``overhead``: the same federated workload through fedwsa's Flower simulation and
  through a plain PyTorch loop (``plain_federation`` below) that does the same local
  training, averaging and evaluation and nothing else (in partition order and in a random
  order); wall time per round, ratio, and each round split into time with both training
  processes busy, one waiting and both waiting (:class:`Busy`).
- ``step``: one local SGD step with plain cross-entropy, FedProx and WSA (kl, w2), fused
  and autograd, on the NIID-Bench CNN and the VGG-style model (random input).
- ``scale``: 100 / 1,000 / 10,000 virtual clients, 10 sampled per round: memory of all
  processes together, time per round, time to start; with the issue's workload (one
  epoch of each sampled client's data, which shrinks as clients grow) and with the same
  work per sampled client at every size (``local_steps`` steps of equal batches).
- ``startup``: time from the command to the first round, and from the last round to exit.
- ``flower_sweep``: Flower's own per-node message sweep, timed alone at each client count
  (why a round costs more at 10,000 clients; see ``docs/PERFORMANCE.md``).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import multiprocessing as mp
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import torch

from experiments.launch import PROJECT_DIR

# --- helpers ------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    return {
        "cpu": platform.processor() or platform.machine(),
        "cores": psutil.cpu_count(logical=True),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "load_average_at_start": [round(x, 2) for x in psutil.getloadavg()],
    }


def median(xs: list[float]) -> float:
    return float(statistics.median(xs)) if xs else float("nan")


def table(rows: list[dict[str, Any]], cols: list[str]) -> str:
    def fmt(v: Any) -> str:
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    out += ["| " + " | ".join(fmt(r.get(c, "")) for c in cols) + " |" for r in rows]
    return "\n".join(out)


def save(name: str, result: dict[str, Any], out: str | None) -> None:
    path = Path(out) if out else PROJECT_DIR / "docs" / "bench" / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    result = {"benchmark": name, "command": " ".join(["python -m experiments.bench", *sys.argv[1:]]),
              "machine": machine(), **result}  # fmt: skip
    path.write_text(json.dumps(result, indent=1))
    print(f"written to {path}")


class Watch:
    """Samples, every ``period`` s, the memory of a process and all its descendants.

    ``pss``: proportional set size (shared pages split between the processes sharing
    them), the honest "memory of all processes together"; ``rss`` counts shared pages once
    per process and so over-states it."""

    def __init__(self, pid: int, period: float = 0.5) -> None:
        self.pid, self.period = pid, period
        self.peak_pss = self.peak_rss = 0
        self.peak_procs = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                root = psutil.Process(self.pid)
                procs = [root, *root.children(recursive=True)]
            except psutil.NoSuchProcess:
                return
            pss = rss = 0
            for p in procs:
                try:
                    info = p.memory_full_info()
                    pss += info.pss
                    rss += info.rss
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    pass
            self.peak_pss, self.peak_rss = max(self.peak_pss, pss), max(self.peak_rss, rss)
            self.peak_procs = max(self.peak_procs, len(procs))
            self._stop.wait(self.period)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


# Flower log lines (verbose=true) that mark the steps of a simulation's start.
FLOWER_MARKS = {
    "superlink_up": "Using SuperLink",  # flwr run has started and found the SuperLink
    "run_submitted": "Successfully started run",  # the FAB is built and the run accepted
    "simulation_started": "Starting Flower Simulation",  # the simulation process runs
    "first_round_sent": "configure_train: Sampled",  # round 1's messages go out
}


Finder = Callable[[], list[psutil.Process]]


class Busy:
    """Samples, every ``period`` s, the CPU use of two training processes (Ray's client
    actors or the plain loop's workers): the time both train, one waits, or both wait;
    and, given ``others``, the CPU the run's other processes use while both train."""

    def __init__(self, find: Finder, others: Finder | None = None, period: float = 0.05) -> None:
        self.find, self.others, self.period = find, others, period
        # (time, dt, processes > 50 % busy, CPU seconds of the other processes in dt)
        self.samples: list[tuple[float, float, int, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        procs: list[psutil.Process] = []
        rest: list[psutil.Process] = []
        prev: tuple[float, list[float], float] | None = None
        while not self._stop.wait(self.period):
            if len(procs) != 2:
                procs, prev = self.find(), None
                mine = {p.pid for p in procs}
                rest = [p for p in self.others() if p.pid not in mine] if self.others and procs else []
                continue
            try:
                cpu = [float(sum(p.cpu_times()[:2])) for p in procs]
            except psutil.Error:
                procs, prev = [], None
                continue
            other = 0.0
            for p in rest:
                with contextlib.suppress(psutil.Error):
                    other += float(sum(p.cpu_times()[:2]))
            now = time.perf_counter()
            if prev is not None:
                dt = now - prev[0]
                busy = sum((c - c0) / dt > 0.5 for c, c0 in zip(cpu, prev[1], strict=True))
                self.samples.append((now, dt, busy, max(other - prev[2], 0.0)))
            prev = (now, cpu, other)

    def split(self, start: float, end: float, rounds: int) -> dict[str, float | None]:
        """Seconds per round with 2, 1 and 0 of the processes training, in ``[start, end]``."""
        self._stop.set()
        self._thread.join(timeout=5)
        busy = {2: 0.0, 1: 0.0, 0: 0.0}
        other_cpu = 0.0
        for t, dt, n, other in self.samples:
            if start <= t <= end:
                busy[n] += dt
                other_cpu += other if n == 2 else 0.0
        return {
            "both_train_s": busy[2] / rounds,
            "one_waits_s": busy[1] / rounds,
            "both_wait_s": busy[0] / rounds,
            # CPU seconds per second used by the run's other processes while both train
            "others_cpu_while_both_train": other_cpu / busy[2] if busy[2] and self.others else None,
        }


def run_cli(args: list[str], out: Path, watch: bool = False, busy: bool = False) -> dict[str, Any]:
    """Run ``python -m experiments.run`` with ``args``; timestamps of its progress lines.

    ``watch``: sample the memory of all its processes; ``busy``: sample its two client
    actors' CPU use (:class:`Busy`, returned as ``result["busy"]``)."""
    cmd = [sys.executable, "-m", "experiments.run", f"hydra.run.dir={out}", *args]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=PROJECT_DIR, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    w = Watch(proc.pid) if watch else None
    b = None
    if busy:  # the two client actors; the others: the launcher and all its other descendants
        b = Busy(
            lambda: descendants(proc.pid, "ClientAppActor"),
            lambda: [psutil.Process(proc.pid), *descendants(proc.pid, "")],
        )
    marks: dict[str, float] = {}
    lines = []
    assert proc.stdout is not None
    for line in proc.stdout:
        now = time.perf_counter() - t0
        lines.append(line)
        if m := re.search(r"\[fedwsa\] round\s+(\d+)/", line):
            marks[f"round_{int(m.group(1))}"] = now
        elif "[fedwsa] finished" in line:
            marks["finished"] = now
        elif "Flower Simulation Engine ->" in line:
            marks["prepared"] = now
        for key, text in FLOWER_MARKS.items():  # with verbose=true: Flower's own steps
            if text in line and key not in marks:
                marks[key] = now
    code = proc.wait()
    marks["exit"] = time.perf_counter() - t0
    if w:
        w.stop()
    if code != 0:
        raise SystemExit(f"benchmark run failed ({code}):\n{''.join(lines[-20:])}")
    rows = json.loads((out / "metrics.json").read_text())["rounds"]
    result: dict[str, Any] = {"marks": marks, "rows": rows, "t0": t0}
    if b:
        result["busy"] = b
    if w:
        result.update(
            peak_pss_mb=w.peak_pss / 2**20, peak_rss_mb=w.peak_rss / 2**20, peak_processes=w.peak_procs
        )
    return result


def descendants(pid: int, text: str) -> list[psutil.Process]:
    """The descendants of ``pid`` whose command line contains ``text``."""
    found = []
    with contextlib.suppress(psutil.Error):
        for p in psutil.Process(pid).children(recursive=True):
            with contextlib.suppress(psutil.Error):
                if text in " ".join(p.cmdline()):
                    found.append(p)
    return found


# --- overhead -----------------------------------------------------------------------------

OVERHEAD_ARGS = [
    "dataset=fmnist", "num_clients=10", "partition.alpha=0.5", "epochs=1", "num_rounds=5",
    "batch_size=64", "lr=0.01", "momentum=0.9", "weight_decay=1e-5", "strategy=fedavg",
    "client_cpus=1", "client_threads=1",
]  # fmt: skip


def _overhead_cfg(seed: int) -> Any:
    """The experiment the CLI builds from ``OVERHEAD_ARGS`` (Hydra's compose API)."""
    from hydra import compose, initialize_config_dir

    from experiments.common import CONF_DIR, resolve

    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", [*OVERHEAD_ARGS, f"seed={seed}", "out_dir=unused"])
    return resolve(cfg)


_CFG: Any = None


def _client(job: tuple[int, int, dict[str, np.ndarray]]) -> tuple[int, dict[str, np.ndarray], int]:
    from fedwsa.client import local_round
    from fedwsa.wire import TrainSettings

    rnd, pid, state = job
    c = _CFG
    settings = TrainSettings(
        server_round=rnd, lr=c.lr, epochs=c.epochs, local_steps=c.local_steps, batch_size=c.batch_size,
        momentum=c.momentum, weight_decay=c.weight_decay,
    )  # fmt: skip
    new, reply = local_round(c, pid, {k: torch.from_numpy(v) for k, v in state.items()}, settings)
    return pid, {k: v.numpy() for k, v in new.items()}, reply.num_examples


def _init_worker(cfg: Any) -> None:
    global _CFG
    _CFG = cfg
    torch.set_num_threads(cfg.client_threads)


def plain_federation(cfg: Any, workers: int, shuffle_seed: int | None = None) -> dict[str, Any]:
    """FedAvg with nothing but PyTorch and a process pool: ``workers`` processes with
    ``client_threads`` torch threads each (the layout of the simulation's Ray actors), the
    same local training (``fedwsa.client.local_round``: same data, seeds, batches), the
    same weighted average in partition order (Flower's arithmetic) and the same central
    evaluation.

    Clients are handed to the workers in partition order, or, with ``shuffle_seed``, in a
    random order each round: Flower's simulation hands them out in the order its virtual
    nodes registered, whose ids are random, so its order is random per run. With unequal
    partitions the order changes when the last worker finishes (the results do not)."""
    from fedwsa.client import experiment_data, new_model, partitions
    from fedwsa.train import evaluate

    t0 = time.perf_counter()
    data = experiment_data(cfg)
    partitions(cfg)  # loaded before the fork: the workers share it
    model = new_model(cfg)
    state = {k: v.numpy().copy() for k, v in model.state_dict().items()}
    rows, marks = [], {}
    ctx = mp.get_context("fork")
    with ctx.Pool(workers, initializer=_init_worker, initargs=(cfg,)) as pool:
        marks["start"] = time.perf_counter() - t0
        rng = np.random.default_rng(shuffle_seed)
        for rnd in range(1, cfg.num_rounds + 1):
            t = time.perf_counter()
            order = rng.permutation(cfg.num_clients) if shuffle_seed is not None else range(cfg.num_clients)
            replies = sorted(pool.map(_client, [(rnd, int(pid), state) for pid in order], chunksize=1))
            total = float(sum(n for _, _, n in replies))
            agg: dict[str, np.ndarray] = {}
            for _, params, n in replies:
                for k, v in params.items():
                    agg[k] = v * (n / total) if k not in agg else agg[k] + v * (n / total)
            state = agg
            model.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})
            torch.set_num_threads(1)
            loss, acc = evaluate(model, data.x_test, data.y_test, cfg.eval_batch_size)
            end = time.perf_counter()
            rows.append({"round": rnd, "test_accuracy": acc, "test_loss": loss,
                         "round_time_s": end - t, "ended_at": end})  # fmt: skip
    marks["total"] = time.perf_counter() - t0
    return {"rows": rows, "marks": marks}


def bench_overhead(args: argparse.Namespace) -> dict[str, Any]:
    cfg = _overhead_cfg(args.seed)
    variants = ["fedwsa", "plain", "plain_random_order"]
    runs: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
    with tempfile.TemporaryDirectory(prefix="fedwsa-bench-") as tmp:
        for rep in range(args.repeat):
            for variant in variants[rep % 3 :] + variants[: rep % 3]:  # each variant first once in 3
                if variant == "fedwsa":
                    r = run_cli([*OVERHEAD_ARGS, f"seed={args.seed}"], Path(tmp) / f"sim{rep}", busy=True)
                    r["rows"] = r["rows"][1:]  # round 0 is the initial model
                    n = len(r["rows"])
                    span = (r["t0"] + r["marks"]["round_1"], r["t0"] + r["marks"][f"round_{n}"])
                else:
                    shuffle = 1000 + rep if variant == "plain_random_order" else None
                    watcher = Busy(psutil.Process().children) if args.workers == 2 else None
                    r = plain_federation(cfg, workers=args.workers, shuffle_seed=shuffle)
                    r["busy"] = watcher
                    span = (r["rows"][0]["ended_at"], r["rows"][-1]["ended_at"])
                if r["busy"] is not None:  # rounds 2-5: seconds per round with 2, 1, 0 processes training
                    r["busy"] = r["busy"].split(*span, rounds=len(r["rows"]) - 1)
                runs[variant].append(r)
                times = [row["round_time_s"] for row in r["rows"]]
                print(f"rep {rep} {variant:>6}: rounds {[round(x, 2) for x in times]} s, "
                      f"final accuracy {r['rows'][-1]['test_accuracy']:.4f}", flush=True)  # fmt: skip
    summary = []
    for variant, rs in runs.items():
        per_round = [median([row["round_time_s"] for row in r["rows"]]) for r in rs]
        steady = [median([row["round_time_s"] for row in r["rows"][1:]]) for r in rs]
        summary.append({
            "variant": variant, "median_round_s": median(per_round), "median_round_2_to_5_s": median(steady),
            "round_1_s": median([r["rows"][0]["round_time_s"] for r in rs]),
            "final_accuracy": rs[0]["rows"][-1]["test_accuracy"],
            "same_accuracy_every_rep": len({r["rows"][-1]["test_accuracy"] for r in rs}) == 1,
            **{k: median([r["busy"][k] for r in rs]) for k in ("both_train_s", "one_waits_s", "both_wait_s")},
            "others_cpu_while_both_train": rs[0]["busy"]["others_cpu_while_both_train"]
            and median([r["busy"]["others_cpu_while_both_train"] for r in rs]),
        })  # fmt: skip
    ratio = summary[0]["median_round_s"] / summary[1]["median_round_s"]
    steady_ratio = summary[0]["median_round_2_to_5_s"] / summary[1]["median_round_2_to_5_s"]
    random_ratio = summary[0]["median_round_s"] / summary[2]["median_round_s"]
    print(table(summary, list(summary[0])))
    print(f"ratio fedwsa / plain, median round: {ratio:.3f}; rounds 2-5: {steady_ratio:.3f}; "
          f"fedwsa / plain in random order: {random_ratio:.3f}")  # fmt: skip
    same = all(
        a["test_accuracy"] == b["test_accuracy"]
        for v in variants[1:] for r in runs[v]
        for a, b in zip(runs["fedwsa"][0]["rows"], r["rows"], strict=True)
    )  # fmt: skip
    print(f"per-round accuracy identical in every variant and repetition: {same}")
    return {"settings": OVERHEAD_ARGS, "workers": args.workers, "summary": summary, "ratio": ratio,
            "ratio_rounds_2_to_5": steady_ratio, "ratio_to_random_order": random_ratio,
            "accuracy_identical": same, "runs": runs}  # fmt: skip


# --- step ---------------------------------------------------------------------------------


def bench_step(args: argparse.Namespace) -> dict[str, Any]:
    from fedwsa.models import build_model
    from fedwsa.regularizers import make_regularizer
    from fedwsa.train import sgd_step
    from fedwsa.wsa import model_scope, scoped_names

    torch.set_num_threads(args.threads)
    rows = []
    for model_name, shape in (("cnn", (1, 28, 28)), ("vgg", (3, 32, 32))):
        torch.manual_seed(0)
        model = build_model(model_name, shape, 10)
        names = scoped_names(model)
        target = model_scope(model, names) * np.array([[1.0, 1.2]])
        x, y = torch.randn(args.batch, *shape), torch.randint(0, 10, (args.batch,))
        wsa = {"wsa_lambda": 1.0, "target": target, "names": names}
        variants: dict[str, tuple[Any, bool]] = {
            "plain": (None, True),
            "fedprox": (make_regularizer(model, proximal_mu=0.01), True),
            "wsa_kl": (make_regularizer(model, **wsa), True),
            "wsa_w2": (make_regularizer(model, **wsa, distance="w2"), True),
            "fedprox_autograd": (make_regularizer(model, proximal_mu=0.01), False),
            "wsa_kl_autograd": (make_regularizer(model, **wsa), False),
        }  # fmt: skip
        opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9, weight_decay=1e-5)
        step = functools.partial(sgd_step, model, opt, x, y)  # the step training takes
        times: dict[str, list[float]] = {k: [] for k in variants}
        for _ in range(3):  # warm-up
            for reg, fused in variants.values():
                step(reg, fused)
        for _ in range(args.repeat):
            for name, (reg, fused) in variants.items():
                t = time.perf_counter()
                for _ in range(args.steps):
                    step(reg, fused)
                times[name].append((time.perf_counter() - t) / args.steps)
        plain = median(times["plain"])
        for name, ts in times.items():
            rows.append({"model": model_name, "variant": name, "median_step_ms": 1000 * median(ts),
                         "ratio_to_plain": median(ts) / plain})  # fmt: skip
    print(table(rows, ["model", "variant", "median_step_ms", "ratio_to_plain"]))
    return {"threads": args.threads, "batch": args.batch, "steps_per_sample": args.steps,
            "repeat": args.repeat, "rows": rows}  # fmt: skip


# --- scale and startup ----------------------------------------------------------------------


def images_per_round(out: Path, rows: list[dict[str, Any]]) -> float:
    """Median number of images the sampled clients trained on per round (from the run's
    own config.json: partition sizes, and the batches ``fedwsa.train.local_batches`` takes)."""
    from fedwsa.client import partitions
    from fedwsa.config import from_dict
    from fedwsa.train import local_batches

    cfg = from_dict(json.loads((out / "config.json").read_text())["config"])
    sizes = [len(p) for p in partitions(cfg)]

    def trained(s: int) -> int:
        idx = torch.arange(s)
        return sum(len(yb) for _, yb in local_batches(idx, idx, cfg.batch_size, epochs=cfg.epochs,
                                                      steps=cfg.local_steps))  # fmt: skip

    return median([sum(trained(sizes[c]) for c in row["clients"]) for row in rows])


# Same work per sampled client at every size: ``SCALE_STEPS`` full batches of ``SCALE_BATCH``
# images. IID splits at every size (600, 60 or 6 images per client: whole batches of 6;
# the framework's cost does not depend on the split).
SCALE_STEPS, SCALE_BATCH = 10, 6
SCALE_WORK = {
    "epoch": ["epochs=1", "batch_size=64"],  # the workload: work shrinks with size
    "equal": [f"local_steps={SCALE_STEPS}", f"batch_size={SCALE_BATCH}"],
}


def bench_scale(args: argparse.Namespace) -> dict[str, Any]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="fedwsa-bench-") as tmp:
        for n in args.clients:
            sweep = [
                "dataset=fmnist",
                f"num_clients={n}",
                f"fraction_train={10 / n}",
                f"num_rounds={args.rounds}",
            ]
            for work in args.work:
                part = ["partition=dirichlet", "partition.alpha=0.5", "partition.min_size=10"]
                if n > 1000 or work == "equal":  # Dir(0.5) leaves clients empty at 6 images each
                    part = ["partition=iid"]
                args_ = [*sweep, *SCALE_WORK[work], "lr=0.01", "strategy=fedavg", *part]
                r = run_cli(args_, Path(tmp) / f"scale{n}-{work}", watch=True)
                times = [row["round_time_s"] for row in r["rows"][1:]]
                m = r["marks"]
                rows.append({
                    "work": work, "clients": n, "partition": part[0].split("=")[1],
                    "peak_pss_mb": r["peak_pss_mb"], "peak_rss_mb": r["peak_rss_mb"],
                    "processes": r["peak_processes"], "to_round_0_s": m.get("round_0"),
                    "round_1_s": times[0], "median_round_2_on_s": median(times[1:]),
                    "images_per_round": images_per_round(Path(tmp) / f"scale{n}-{work}", r["rows"][1:]),
                    "total_s": m["exit"],
                })  # fmt: skip
                print(table(rows[-1:], list(rows[-1])), flush=True)
    for work in args.work:
        mine = [r for r in rows if r["work"] == work]
        base = mine[0]["median_round_2_on_s"]
        for r in mine:
            r["round_vs_smallest"] = r["median_round_2_on_s"] / base
    print(table(rows, list(rows[0])))
    return {"rounds": args.rounds, "steps": SCALE_STEPS, "batch": SCALE_BATCH, "rows": rows}


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


def bench_flower_sweep(args: argparse.Namespace) -> dict[str, Any]:
    """Flower's Simulation Engine, alone: registering N virtual nodes, and one sweep of the
    thread that every 0.1 s asks the link state for each node's pending messages
    (``add_messages_to_queue`` in ``flwr/server/superlink/fleet/vce/vce_api.py``)."""
    from flwr.server.superlink.fleet.vce.vce_api import _register_nodes
    from flwr.server.superlink.linkstate import LinkStateFactory
    from flwr.supercore.constant import FLWR_IN_MEMORY_DB_NAME
    from flwr.supercore.object_store import ObjectStoreFactory
    from flwr.superlink.federation import NoOpFederationManager

    rows = []
    for n in args.clients:
        factory = LinkStateFactory(FLWR_IN_MEMORY_DB_NAME, NoOpFederationManager(), ObjectStoreFactory())
        t = time.perf_counter()
        nodes = _register_nodes(n, factory)
        register = time.perf_counter() - t
        state = factory.state()
        sweeps = []
        for _ in range(args.repeat):
            t = time.perf_counter()
            for node_id in nodes:  # what add_messages_to_queue does every 0.1 s
                state.get_message_ins(node_id=node_id, limit=1)
            sweeps.append(time.perf_counter() - t)
        sweep = median(sweeps)
        rows.append({"nodes": n, "register_s": register, "sweep_ms": 1000 * sweep,
                     "share_of_a_core": sweep / (sweep + 0.1)})  # fmt: skip
    print(table(rows, list(rows[0])))
    return {"repeat": args.repeat, "rows": rows}


BENCHMARKS: dict[str, Callable[[argparse.Namespace], dict[str, Any]]] = {
    "overhead": bench_overhead, "step": bench_step, "scale": bench_scale, "startup": bench_startup,
    "flower_sweep": bench_flower_sweep,
}  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m experiments.bench", description=__doc__.split("\n\n")[0])
    p.add_argument("name", choices=sorted(BENCHMARKS))
    p.add_argument("--repeat", type=int, default=3, help="repetitions (interleaved where there are variants)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=2, help="overhead: processes of the plain loop")
    p.add_argument("--threads", type=int, default=1, help="step: torch threads")
    p.add_argument("--batch", type=int, default=64, help="step: batch size")
    p.add_argument("--steps", type=int, default=20, help="step: steps per timing sample")
    p.add_argument(
        "--clients",
        type=int,
        nargs="+",
        default=[100, 1000, 10000],
        help="scale, flower_sweep: client counts",
    )
    p.add_argument("--rounds", type=int, default=6, help="scale: rounds per run")
    p.add_argument(
        "--work",
        nargs="+",
        choices=sorted(SCALE_WORK),
        default=["epoch", "equal"],
        help="scale: workloads (epoch: one local epoch; equal: the same steps for every client)",
    )
    p.add_argument("--out", default=None, help="JSON file (default docs/bench/<name>.json)")
    args = p.parse_args(argv)
    save(args.name, BENCHMARKS[args.name](args), args.out)


if __name__ == "__main__":
    main()
