"""The round loop: sample, send, check the replies, clip, aggregate, evaluate, checkpoint.

Flower's ``Strategy.start`` numbers rounds from 1 on every call, so the loop is ours (the
strategy's own ``configure_train`` and ``aggregate_train``, in Flower's order); that is
what lets a resumed run continue at round ``r + 1``. It runs on any Flower Grid:
simulation, deployment, or the in-process grid of the tests.
"""

from __future__ import annotations

from contextlib import suppress
from typing import Any

import torch
from flwr.app import ArrayRecord, ConfigRecord
from flwr.serverapp import Grid

from fedwsa.device import resolve_device, set_deterministic
from fedwsa.run import checkpoint
from fedwsa.run.checkpoint import Checkpoint
from fedwsa.run.config import ExperimentConfig
from fedwsa.run.factory import device_data, new_model, partition_sizes
from fedwsa.run.local_round import train_settings
from fedwsa.run.results import COLUMNS, PRIVACY_COLUMNS, RunLog, scope_stats
from fedwsa.run.tracking import Trackers
from fedwsa.run.wire import EXPERIMENT, FINISHED, PROGRESS, encode_train
from fedwsa.train import evaluate
from fedwsa.wsa import model_scope, scope_of_arrays, scoped_names
from strategies.grid import PartitionGrid
from strategies.privacy import Private
from strategies.registry import build_strategy, scope_all, unit
from strategies.replies import Update, attack, attackers, beyond_bound, clip, screen


class RunFailed(RuntimeError):
    """The run cannot go on (too many failed rounds, results not writable); one line."""


def say(text: str) -> None:
    print(f"[fedwsa] {text}", flush=True)


class Session:
    """One run: the model, the strategy, the results, and the loop over rounds."""

    def __init__(
        self,
        grid: Grid,
        cfg: ExperimentConfig,
        assign: bool = False,
        carry_experiment: bool = False,
        fresh_noise: bool = False,
    ) -> None:
        self.cfg = cfg
        self.carry_experiment = carry_experiment
        self.grid = PartitionGrid(grid, cfg.num_clients, cfg.sample_size, cfg.seeds.sampling, cfg.node_wait_s,
                                  cfg.min_fit_clients, pool=cfg.node_pool if assign else 0)  # fmt: skip
        self.device = resolve_device(cfg.device)
        set_deterministic(cfg.deterministic)
        _, _, self.x_test, self.y_test = device_data(cfg, self.device)  # moved there once
        self.sizes = partition_sizes(cfg)  # what each client must report
        model = new_model(cfg)
        self.names = scoped_names(model, scope_all(cfg))
        self.shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        self.strategy = build_strategy(cfg, model, self.names, self.grid, self.sizes)
        if cfg.privacy.kind != "none":  # Flower's DP around it; the noise seeded unless fresh_noise
            accounted = unit(cfg.strategy.name).dp_mean
            self.strategy = Private(self.strategy, cfg, accounted, seeded=not fresh_noise)
        self.attack = attackers(cfg)  # partition ids (model attacks; label_flip acts in the clients)
        info = (
            {"attack": {"kind": cfg.attack.kind, "attackers": self.attack}}
            if cfg.attack.kind != "none"
            else {}
        )
        private = cfg.privacy.kind != "none"
        columns = (*COLUMNS[:-2], *PRIVACY_COLUMNS, *COLUMNS[-2:]) if private else COLUMNS
        self.log = RunLog(cfg.out_dir, self.names, info, columns)
        self.arrays = ArrayRecord(model.state_dict())
        self.model = model.to(self.device)  # evaluates the global model
        self.grid.progress = self.progress
        self.rnd = 0  # the round running
        self.done = 0  # rounds completed
        self.failed_rounds = 0  # consecutive rounds without an aggregate
        self.saved = 0  # last round checkpointed
        self.trackers = Trackers(None, [])  # none until run() knows whether it resumes

    # --- the loop -------------------------------------------------------------------------
    def run(self) -> None:
        cfg = self.cfg
        resumed = bool(cfg.resume and self.restore())
        self.trackers = Trackers(cfg, self.names, self.done if resumed else None)
        if not resumed:
            self.record(0, None, [])
        shared = encode_train(train_settings(cfg, 0))
        if self.carry_experiment:  # a sweep's Flower run: its run config names no experiment
            shared[EXPERIMENT] = cfg.to_json()
        for rnd in range(self.done + 1, cfg.num_rounds + 1):
            self.rnd = rnd
            # a fresh record each round: strategies add their own keys to it
            messages = self.strategy.configure_train(rnd, self.arrays, ConfigRecord(shared), self.grid)
            replies = list(self.grid.send_and_receive(messages, timeout=cfg.round_timeout_s))
            updates, failed = self.check(replies)
            if self.attack and updates:  # simulated attackers (attack=...), before any defence
                updates = attack(
                    updates, self.arrays, self.attack, cfg.attack, rnd, cfg.seeds.partition, self.names
                )
            if cfg.privacy.kind == "client_fixed" and updates:  # did each client clip? (checked)
                updates, failed = self.bounded(updates, failed)
            if cfg.update_clip and updates:
                updates = self.clip(updates)
            new = None
            if len(updates) < cfg.min_fit_clients:
                say(f"only {len(updates)} replies (< min_fit_clients={cfg.min_fit_clients}): round skipped")
            else:
                new, _ = self.strategy.aggregate_train(rnd, [u.message for u in updates])
                if new is None:  # e.g. Bulyan with fewer than 4f + 3 replies
                    say(f"{cfg.strategy.name} could not aggregate {len(updates)} replies: round skipped")
            if new is None:
                self.failed_rounds += 1
                self.record(rnd, None, failed)
            else:
                self.arrays, self.failed_rounds = new, 0
                self.record(rnd, updates, failed)
            self.done = rnd
            if self.failed_rounds >= cfg.max_failed_rounds:
                raise RunFailed(
                    f"{self.failed_rounds} rounds in a row without enough good replies "
                    f"(max_failed_rounds={cfg.max_failed_rounds}); the clients' errors are in the log"
                )
            if rnd % cfg.checkpoint_every == 0 or rnd == cfg.num_rounds:
                self.save()
        if isinstance(self.strategy, Private):
            spent = self.strategy.spent()
            eps = "not accounted for this strategy" if spent["epsilon"] is None else f"{spent['epsilon']:.4g}"
            say(f"privacy spent: epsilon {eps} at delta {spent['delta']:g} ({cfg.privacy.kind})")
        final = {k: torch.as_tensor(v) for k, v in self.arrays.to_torch_state_dict().items()}
        self.log.finish(final)
        self.trackers.finish(self.log.rows, self.log.out / "model.pt")

    # --- the steps --------------------------------------------------------------------------
    def check(self, replies: list[Any]) -> tuple[list[Update], list[int]]:
        """The sound replies, and the drawn clients without one (offline ones included; each
        reason printed)."""
        updates, rejected = screen(replies, self.grid.partition_of_reply, self.shapes, self.sizes)
        for pid, reason in rejected.items():
            say(f"client {pid} failed: {reason}")
        answered = {u.partition_id for u in updates}
        failed = [p for p in self.grid.drawn if p not in answered]
        if failed:
            say(f"clients {failed} gave no usable reply this round")
        return updates, failed

    def progress(self, done: int, total: int, elapsed: float) -> None:
        """A line while a round runs (the launcher shows it as a live bar on a terminal)."""
        left = elapsed / done * (total - done)
        say(f"{PROGRESS}round {self.rnd:>3}/{self.cfg.num_rounds}: {done}/{total} clients, "
            f"{elapsed:.0f} s elapsed, ~{left:.0f} s left")  # fmt: skip

    def bounded(self, updates: list[Update], failed: list[int]) -> tuple[list[Update], list[int]]:
        base = {k: v.numpy() for k, v in self.arrays.items()}
        kept, rejected = beyond_bound(updates, base, self.cfg.privacy.clipping_norm)
        for pid, reason in rejected.items():
            say(f"client {pid} failed: {reason}")
        return kept, failed + sorted(rejected)

    def clip(self, updates: list[Update]) -> list[Update]:
        base = {k: v.numpy() for k, v in self.arrays.items()}
        updates, scales = clip(updates, base, self.cfg.update_clip)
        if any(x < 1.0 for x in scales):
            say(f"clipped updates, scales {[round(x, 3) for x in scales]}")
        return updates

    def record(self, rnd: int, updates: list[Update] | None, failed: list[int]) -> None:
        """Central evaluation of the global model and the round's row of results.

        ``updates``: the replies aggregated this round (``None``: the round was skipped)."""
        self.model.load_state_dict(self.arrays.to_torch_state_dict())
        loss, acc = evaluate(self.model, self.x_test, self.y_test, self.cfg.eval_batch_size)
        row: dict[str, Any] = {"round": rnd, "test_accuracy": acc, "test_loss": loss,
                               "num_failures": len(failed), "failed_clients": failed}  # fmt: skip
        scopes = {"global": model_scope(self.model, self.names).tolist(), **self.strategy.round_record(rnd)}
        if isinstance(self.strategy, Private):
            row.update(self.strategy.spent())
        if rnd and updates is None:
            row["num_replies"] = 0
        elif updates:
            n = sum(u.num_examples for u in updates)
            row.update(train_loss=sum(u.train_loss * u.num_examples for u in updates) / n,
                       num_replies=len(updates), clients=[u.partition_id for u in updates],
                       peak_memory_mb=[round(u.peak_memory_mb, 1) for u in updates],
                       client_nodes=[u.node for u in updates])  # fmt: skip
            scopes.update(scope_stats([scope_of_arrays(u.arrays, self.names) for u in updates]))
        full = self.log.add_round(row, scopes)
        self.trackers.round(full, self.log.scopes[-1])
        train = f"  train_loss {row['train_loss']:.4f}" if "train_loss" in row else ""
        replied = f"  clients {row['num_replies']}/{self.cfg.sample_size}" if rnd else ""
        say(f"round {rnd:>3}/{self.cfg.num_rounds}  acc {acc:.4f}  loss {loss:.4f}{train}{replied}  "
            f"elapsed {full['elapsed_s']:.1f}s")  # fmt: skip

    # --- checkpoints --------------------------------------------------------------------
    def save(self) -> None:
        state = {"failed_rounds": self.failed_rounds, **self.strategy.state()}
        ckpt = Checkpoint(
            self.done, dict(self.arrays.to_torch_state_dict()),  # fresh tensors, deserialised
            self.cfg.identity(), state, self.grid.state(), self.log.state(),
        )  # fmt: skip
        checkpoint.save(self.cfg.out_dir, ckpt)
        self.saved = self.done

    def restore(self) -> bool:
        """Continue from the newest good checkpoint; False when there is none."""
        ckpt, problems = checkpoint.load_latest(self.cfg.out_dir, self.cfg.identity())
        for p in problems:
            say(f"skipped a bad checkpoint: {p}")
        if ckpt is None:
            return False
        self.arrays = ArrayRecord(ckpt.params)
        self.done = self.saved = ckpt.round
        self.failed_rounds = int(ckpt.strategy.get("failed_rounds", 0))
        self.strategy.restore(ckpt.strategy)
        self.grid.restore(ckpt.sampler)
        self.log.restore(ckpt.log)
        say(f"resumed after round {ckpt.round} from {checkpoint.folder(self.cfg.out_dir)}")
        return True

    def fail(self, error: str) -> None:
        """Mark the results as failed (if they can still be written)."""
        with suppress(OSError):
            self.log.write("failed", error)
        self.trackers.fail(error)


def run(
    grid: Grid,
    cfg: ExperimentConfig,
    assign: bool = False,
    carry_experiment: bool = False,
    fresh_noise: bool = False,
) -> None:
    """Run the experiment on ``grid`` (any Flower Grid: simulation or deployment).

    ``assign``: the nodes are virtual (Flower's simulation, ``engine=inprocess``): a pool of
    ``cfg.node_pool`` nodes, each round given the sampled partitions in their messages,
    instead of one node per partition asked for its own (see ``strategies.grid``).
    ``carry_experiment``: the train messages carry the experiment (a sweep's Flower run,
    whose run config does not name one). ``fresh_noise``: differential privacy's noise from
    the operating system's entropy (a real federation), not from the run's seeds."""
    session = Session(grid, cfg, assign, carry_experiment, fresh_noise)
    try:
        session.run()
    except OSError as e:
        what = f"{e.strerror or e} ({e.filename})" if e.filename else str(e.strerror or e)
        msg = f"cannot write the results in {cfg.out_dir}: {what}"
        if session.saved:
            msg += f"; checkpoints up to round {session.saved} are intact: rerun with resume=true"
        session.fail(msg)
        raise RunFailed(msg) from e
    except RunFailed as e:
        session.fail(str(e))
        raise
    except TimeoutError as e:
        session.fail(str(e))
        raise RunFailed(str(e)) from e
    print(f"{FINISHED}results in {cfg.out_dir}", flush=True)
