"""Workloads by name: a config's `workload.name` -> the workload class, built with its validated options.

The names live in the workload registry (orchestrator/config/registry.py, the one registry shape of engines,
trainers and workloads): a built-in (arithmetic, chat_arithmetic, gsm8k, math), `package.module:ClassName` (any
importable class implementing the protocol of workloads/base.py), or a name an installed package registers under
the entry-point group `svgap.workloads` (pyproject: [project.entry-points."svgap.workloads"] mytask =
"mypkg.mod:MyTask"). A workload class declares its options as a dataclass in its `Options` attribute (none: no
options) and is built as `Class(options)`; the options are validated like the config (unknown keys, types, ranges,
its own `validate`). Any failure -- unknown name, import error, not the protocol -- is one ConfigError naming it.
"""
from __future__ import annotations

from typing import Any

from orchestrator.config.errors import ConfigError
from orchestrator.config.registry import WORKLOADS
from orchestrator.config.typed import from_dict
from orchestrator.config.workload import options_class

ENTRY_POINT_GROUP = WORKLOADS.group
KNOWN = tuple(WORKLOADS.builtins)
REQUIRED = ("problems", "check", "tf_query", "qe_query", "reference")


def workload_class(name: str, key: str = "workload.name") -> type:
    """The class `name` stands for, checked against the protocol (workloads/base.py)."""
    cls = WORKLOADS.load(name, key)
    if not isinstance(cls, type):
        raise ConfigError(f"{key}: {name!r} is not a class")
    missing = [m for m in REQUIRED if not callable(getattr(cls, m, None))]
    if missing:
        raise ConfigError(f"{key}: {name!r} does not implement the workload protocol of workloads/base.py "
                          f"(missing {', '.join(missing)})")
    if name not in WORKLOADS.builtins:
        options_class(name, key)  # a plug-in's Options: a dataclass whose every field has a default
    return cls


def options_type(name: str, prefix: str = "workload") -> type:
    """The class that validates `workload.options` for this workload (kept for callers written before)."""
    return options_class(name, f"{prefix}.name" if prefix else "name")


def get(name: str, options: dict[str, Any] | None = None):
    """Construct a workload from its name and (already validated) options."""
    cls = workload_class(name)
    opts = from_dict(options_class(name), options or {}, "workload.options")
    return cls(opts) if name in WORKLOADS.builtins or getattr(cls, "Options", None) else cls()

