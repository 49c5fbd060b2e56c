"""The variants of a study: `--grid key=v1,v2` axes x seeds -> one validated ExperimentConfig each.

Every variant is validated before anything runs, so an unknown key or a value the config refuses is one line naming
it. The study's identity (a hash of the resolved base config, the grid, the seeds and where it logs) names its
folder, so running the same command again finds -- and restores -- the same Tune study.
"""
from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass, field
from typing import Callable

from orchestrator import config as config_mod
from orchestrator.config import ExperimentConfig
from orchestrator.errors import SvgapError
from orchestrator.config.fields import NUMBER as _NUMBER
from orchestrator.config.typed import to_dict

MAX_TRIALS = 16  # a larger study asks for --yes
FORBIDDEN = {"seed": "use --seeds K instead", "tracking": "a study's runs log where the study logs"}


@dataclass
class Variant:
    """One trial: a grid point (dotted key -> value) and a seed, with its validated config."""
    point: dict
    seed: int
    cfg: ExperimentConfig
    name: str | None = None  # the study's own name of the point (allocate: the strategy), else key=value pairs

    @property
    def point_label(self) -> str:
        return self.name or ", ".join(f"{k}={_show(v)}" for k, v in self.point.items()) or "base"

    @property
    def label(self) -> str:
        return f"{self.point_label} seed {self.seed}"

    @property
    def strategy(self) -> str:
        """The external-data strategy (the axis of the allocation study)."""
        return str(self.point.get("external.strategy", self.cfg.external.strategy))


@dataclass
class Outcome:
    """What a finished (or failed, or stopped) trial left: its MLflow run, its round records, and why it ended."""
    variant: Variant
    run_id: str | None = None
    records: list = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0
    stop: dict | None = None  # set when the theory scheduler stopped it: round, predicted limit, compute saved
    trial_id: str | None = None
    attempts: int = 0  # MLflow runs the trial made (a retried trial has more than one)


def _show(v) -> str:
    return json.dumps(v) if isinstance(v, (list, dict)) else str(v)


def _number(v):
    """YAML 1.1 reads 1e-5 as text: a grid value that is a number is one (for the table and its plots)."""
    if isinstance(v, str) and _NUMBER.fullmatch(v.strip()):
        return float(v)
    return v


def parse_grid(items: list[str]) -> dict[str, list]:
    """['generation.n=4,8', 'training.lr=1e-5,2e-3'] -> {'generation.n': [4, 8], 'training.lr': [1e-05, 0.002]}."""
    grid: dict[str, list] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key or not raw.strip():
            raise SvgapError(f"--grid {item!r}: expected KEY=V1,V2,... e.g. generation.n=4,8")
        if key in grid:
            raise SvgapError(f"--grid {key}: given twice; list all its values in one --grid")
        top = key.split(".")[0]
        if top in FORBIDDEN:
            raise SvgapError(f"--grid {key}: cannot be swept ({FORBIDDEN[top]})")
        values = [_number(config_mod.parse_scalar(v.strip())) for v in raw.split(",")]
        if any(v == "" for v in (x.strip() for x in raw.split(","))):
            raise SvgapError(f"--grid {item!r}: an empty value")
        if len({json.dumps(v, sort_keys=True) for v in values}) != len(values):
            raise SvgapError(f"--grid {key}: a value is listed twice")
        grid[key] = values
    return grid


def build_variants(data: dict, grid: dict[str, list], seeds: int,
                   namer: Callable[[dict], str] | None = None) -> tuple[ExperimentConfig, list[Variant]]:
    """The base config and one validated config per (grid point, seed): seed = base seed + k, k = 0..seeds-1.
    Each child run is named after its point (namer(point), or its key=value pairs) and seed."""
    if seeds < 1:
        raise SvgapError(f"--seeds must be >= 1, got {seeds}")
    base = config_mod.resolve(base=data)
    keys = list(grid)
    variants = []
    for values in itertools.product(*(grid[k] for k in keys)) if keys else [()]:
        point = dict(zip(keys, values))
        for k in range(seeds):
            v = Variant(point, base.seed + k, base, namer(point) if namer else None)
            try:
                v.cfg = config_mod.resolve(base=data, point={**point, "seed": v.seed, "tracking.run_name": v.label})
            except SvgapError as e:
                where = v.point_label if point else "base config"
                raise SvgapError(f"grid point {where}: {e}") from None
            variants.append(v)
    return base, variants


def check_size(n: int, yes: bool, limit: int = MAX_TRIALS) -> None:
    if n > limit and not yes:
        raise SvgapError(f"the study has {n} trials (more than {limit}); add --yes to run them all")


def identity(kind: str, base: ExperimentConfig, grid: dict, seeds: int, uri: str, experiment: str,
             extra: dict | None = None) -> str:
    """A short hash of everything that makes two study commands the same study."""
    text = json.dumps({"kind": kind, "base": to_dict(base), "grid": grid, "seeds": seeds, "uri": uri,
                       "experiment": experiment, "extra": extra or {}}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]
