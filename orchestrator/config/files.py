"""Config text in and out: YAML files, `--set a.b=c` overrides, the resolved YAML a run saves.

The resolved config is saved with every run and is enough to rerun it (``from_mapping(safe_load(dump(c))) == c``).
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from orchestrator.config.errors import ConfigError, from_validation
from orchestrator.config.experiment import ExperimentConfig
from orchestrator.config.typed import to_dict

DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "arithmetic.yaml"


def parse_scalar(text: str) -> Any:
    """`--set` values are YAML scalars/flow lists: 8, 0.5, true, null, [a, b]."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def apply_overrides(data: dict, overrides: list[str] | tuple[str, ...]) -> dict:
    """Apply `a.b=c` overrides to a raw config mapping (before validation, so errors name the key)."""
    data = copy.deepcopy(data)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. generation.n=8")
        key, _, raw = item.partition("=")
        parts = key.strip().split(".")
        if not all(parts):
            raise ConfigError(f"--set {item!r}: empty key part")
        set_key(data, parts, parse_scalar(raw), f"--set {key}")
    return data


def set_key(data: dict, parts: list[str], value: Any, what: str) -> None:
    """data[a][b]... = value for the dotted key's parts, creating missing sections (overrides and sweep grids)."""
    node = data
    for p in parts[:-1]:
        nxt = node.get(p)
        if nxt is None:
            nxt = node[p] = {}
        if not isinstance(nxt, dict):
            raise ConfigError(f"{what}: {p} is not a section")
        node = nxt
    node[parts[-1]] = value


def read_yaml(path: str | Path) -> dict:
    """A config file's mapping; a missing, unreadable or malformed file is one line naming it."""
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"config file not found: {p}")
    if p.is_dir():
        raise ConfigError(f"config path is a directory, not a file: {p}")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        raise ConfigError(f"config file {p} is not valid YAML{where}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read config file {p}: {e}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {p}: top level must be a mapping of sections")
    return data


def read_default_or(path: str | Path | None) -> dict:
    """The file's mapping; without one, configs/arithmetic.yaml (or, in an installed package without the source
    tree's configs/ folder, nothing: the model defaults, which that file restates -- a test keeps them equal)."""
    if path is None and not DEFAULT_CONFIG.is_file():
        return {}
    return read_yaml(path or DEFAULT_CONFIG)


def from_mapping(data: dict) -> ExperimentConfig:
    """A raw mapping -> validated ExperimentConfig; the first problem as one line naming its key."""
    try:
        return ExperimentConfig.model_validate({} if data is None else data)
    except ValidationError as e:
        raise from_validation(e) from None


def dump(cfg: ExperimentConfig) -> str:
    """Resolved config as YAML text; `from_mapping(yaml.safe_load(dump(c))) == c`."""
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)
