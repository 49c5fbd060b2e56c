"""The one way a command gets its experiment config: file, `--set` overrides, a resumed run's saved config, a
study's grid point -- merged in that order into one mapping, validated once.

Every entry point (run, run --resume, submit, sweep and allocate trials, base-model, sync) calls `resolve`, so a
bad key reads the same one line (exit 2) whichever command met it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

from orchestrator.config.errors import ConfigError
from orchestrator.config.experiment import ExperimentConfig
from orchestrator.config.files import apply_overrides, from_mapping, read_default_or, read_yaml, set_key
from orchestrator.errors import SvgapError


def resolve_mapping(path: str | Path | None = None, overrides: Iterable[str] = (), *,
                    saved: str | Path | None = None, point: dict[str, Any] | None = None,
                    base: dict | None = None) -> dict:
    """The raw mapping `resolve` validates: `base` (a mapping already read), else the saved config of a run
    (`saved`: its config.yaml), else the file `path` (default configs/arithmetic.yaml); then the overrides; then
    a study's grid point (dotted key -> value)."""
    if saved is not None and path is not None:
        raise SvgapError(f"--resume takes the config from the run folder; drop the config file {path}")
    if base is not None:
        data = dict(base)
    else:
        data = read_yaml(saved) if saved is not None else read_default_or(path)
    data = apply_overrides(data, list(overrides))
    for key, value in (point or {}).items():
        set_key(data, key.split("."), value, f"--grid {key}")
    return data


def resolve(path: str | Path | None = None, overrides: Iterable[str] = (), *,
            saved: str | Path | None = None, point: dict[str, Any] | None = None,
            base: dict | None = None) -> ExperimentConfig:
    """The validated experiment config (see resolve_mapping for what is merged). A saved config that no longer
    validates names its run folder."""
    data = resolve_mapping(path, overrides, saved=saved, point=point, base=base)
    try:
        return from_mapping(data)
    except ConfigError as e:
        if saved is None:
            raise
        raise SvgapError(f"run folder {Path(saved).parent}: its config no longer validates: {e}") from None


def load(path: str | Path | None = None, overrides: list[str] | None = None) -> ExperimentConfig:
    """YAML file (default: configs/arithmetic.yaml) + overrides -> validated ExperimentConfig."""
    return resolve(path, overrides or ())
