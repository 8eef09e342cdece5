"""A study's preset: its cells (the product of its axes) and the runs of each cell (tuning and
final), each run a folder and the ``experiments.run`` overrides that make it."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

PRESET_DIR = Path(__file__).resolve().parents[1] / "conf" / "study"


class StudyError(ValueError):
    """A preset that cannot be run; one-line message."""


@dataclass(frozen=True)
class Cell:
    key: dict[str, str]  # axis -> value name
    overrides: tuple[str, ...]

    @property
    def name(self) -> str:
        return ",".join(f"{a}={v}" for a, v in self.key.items())


@dataclass(frozen=True)
class Job:
    """One run: its folder and the overrides of ``experiments.run`` that make it."""

    out_dir: Path
    overrides: tuple[str, ...]


def fmt(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def load_preset(name: str, overrides: list[str]) -> DictConfig:
    path = Path(name) if name.endswith((".yaml", ".yml")) else PRESET_DIR / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in PRESET_DIR.glob("*.yaml")))
        raise StudyError(f"no study preset {name!r} (a .yaml file, or one of: {known})")
    try:
        cfg = OmegaConf.merge(OmegaConf.load(path), OmegaConf.from_dotlist(overrides))
    except (OmegaConfBaseException, ValueError, yaml.YAMLError) as e:
        raise StudyError(f"{path}: {str(e).splitlines()[0]}") from None
    if not isinstance(cfg, DictConfig):
        raise StudyError(f"{path}: a preset is a mapping of keys (common, axes, strategies, final, ...)")
    for key in ("common", "axes", "strategies", "final"):
        if key not in cfg:
            raise StudyError(f"{path}: the preset has no {key!r}")
    for name_, s in cfg.strategies.items():
        if "tune" in s and ("key" not in s.tune or not s.tune["values"]):
            raise StudyError(f"{path}: strategies.{name_}.tune needs a key and a non-empty list of values")
    for role in ("challengers", "references"):
        for s in cfg.get(role, []):
            if s not in cfg.strategies:
                raise StudyError(f"{path}: {role} names {s!r}, which is not under strategies")
    return cfg


def cells(cfg: DictConfig, only: list[str]) -> list[Cell]:
    """The product of the axes, in the preset's order, less what ``only`` (axis=value) leaves out."""
    wanted: dict[str, set[str]] = {}
    for o in only:
        axis, _, value = o.partition("=")
        if axis not in cfg.axes:
            raise StudyError(f"--only {o}: no axis {axis!r} (axes: {', '.join(cfg.axes)})")
        if value not in cfg.axes[axis]:
            raise StudyError(f"--only {o}: axis {axis} has no value {value!r} ({', '.join(cfg.axes[axis])})")
        wanted.setdefault(axis, set()).add(value)
    out = []
    names = list(cfg.axes)
    for combo in itertools.product(*(list(cfg.axes[a]) for a in names)):
        key = dict(zip(names, map(str, combo), strict=True))
        if all(key[a] in vs for a, vs in wanted.items()):
            ov = tuple(o for a in names for o in cfg.axes[a][key[a]])
            out.append(Cell(key, ov))
    if not out:
        raise StudyError("--only leaves no cell to run")
    return out


def tune_jobs(cfg: DictConfig, out: Path, cell: Cell) -> dict[str, list[tuple[float, Job]]]:
    """strategy -> [(value, job)] for every strategy with a knob to tune."""
    jobs: dict[str, list[tuple[float, Job]]] = {}
    t = cfg.get("tune", {})
    for name, s in cfg.strategies.items():
        if "tune" not in s:
            continue
        for v in s.tune["values"]:
            value = float(v)
            ov = (
                *cfg.common,
                *cell.overrides,
                *s.overrides,
                *t.get("overrides", []),
                f"num_rounds={t.get('rounds', 5)}",
                f"seed={t.get('seed', 0)}",
                f"{s.tune.key}={fmt(value)}",
            )
            folder = out / "tune" / cell.name / name / f"{s.tune.key.split('.')[-1]}={fmt(value)}"
            jobs.setdefault(name, []).append((value, Job(folder, ov)))
    return jobs


def final_jobs(cfg: DictConfig, out: Path, cell: Cell, choice: dict[str, float]) -> dict[str, list[Job]]:
    jobs: dict[str, list[Job]] = {}
    for name, s in cfg.strategies.items():
        knob: tuple[str, ...] = ()
        tag = name
        if "tune" in s:
            if name not in choice:
                continue  # not chosen yet (dry run)
            knob = (f"{s.tune.key}={fmt(choice[name])}",)
            tag = f"{name},{s.tune.key.split('.')[-1]}={fmt(choice[name])}"
        for seed in cfg.final.seeds:
            ov = (
                *cfg.common,
                *cell.overrides,
                *s.overrides,
                *cfg.final.get("overrides", []),
                f"num_rounds={cfg.final.rounds}",
                f"seed={seed}",
                *knob,
            )
            jobs.setdefault(name, []).append(Job(out / "final" / cell.name / tag / f"seed={seed}", ov))
    return jobs
