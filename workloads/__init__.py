"""Workload registry: a config's `workload.name` -> the workload class and its options dataclass.

A name is one of
  - a built-in (arithmetic, chat_arithmetic, gsm8k, math),
  - `package.module:ClassName` -- any importable class implementing the protocol of workloads/base.py,
  - a name registered by an installed package under the entry-point group `svgap.workloads`
    (pyproject: [project.entry-points."svgap.workloads"] mytask = "mypkg.mod:MyTask").
A workload class declares its options as a dataclass in its `Options` attribute (none: no options) and is built as
`Class(options)`. Options are validated against that dataclass like the built-ins' (unknown keys, types, ranges,
its own `validate`). Built-ins name their options module separately, so validating a config imports no torch.
Any failure -- unknown name, import error, not the protocol -- is one ConfigError naming the name.
"""
from __future__ import annotations

import importlib
from dataclasses import MISSING, fields, is_dataclass
from importlib.metadata import entry_points
from typing import Any

from orchestrator.config.typed import ConfigError

ENTRY_POINT_GROUP = "svgap.workloads"
# name -> (workload class, options dataclass)
BUILTIN: dict[str, tuple[str, str]] = {
    "arithmetic": ("workloads.arithmetic.workload:ArithmeticWorkload", "workloads.arithmetic.options:ArithmeticOptions"),
    "gsm8k": ("workloads.gsm8k:GSM8KWorkload", "workloads.jsonl_math:MathFileOptions"),
    "math": ("workloads.math:MATHWorkload", "workloads.jsonl_math:MathFileOptions"),
    "chat_arithmetic": ("workloads.chat_arithmetic:ChatArithmeticWorkload",
                        "workloads.chat_arithmetic.options:ChatArithmeticOptions"),
}
KNOWN = tuple(BUILTIN)
REQUIRED = ("problems", "check", "tf_query", "qe_query", "reference")


def _plugins() -> dict[str, str]:
    return {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}


def _import(target: str, key: str, name: str):
    module, _, attr = target.partition(":")
    if not module or not attr:
        raise ConfigError(f"{key}: {name!r} is not package.module:ClassName")
    try:
        mod = importlib.import_module(module)
    except Exception as e:  # noqa: BLE001 - whatever the plug-in's import raises, one line naming it
        raise ConfigError(f"{key}: cannot import {module} for workload {name!r} "
                          f"({type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''})") from None
    try:
        return getattr(mod, attr)
    except AttributeError:
        raise ConfigError(f"{key}: module {module} has no {attr} (workload {name!r})") from None


def _target(name: str, key: str) -> str:
    if name in BUILTIN:
        return BUILTIN[name][0]
    if ":" in name:
        return name
    plugins = _plugins()
    if name in plugins:
        return plugins[name]
    known = ", ".join(KNOWN + tuple(sorted(plugins)))
    raise ConfigError(f"{key}: unknown workload {name!r} (known: {known}; or package.module:ClassName)")


def workload_class(name: str, key: str = "workload.name") -> type:
    """The class `name` stands for, checked against the protocol (workloads/base.py)."""
    cls = _import(_target(name, key), key, name)
    if not isinstance(cls, type):
        raise ConfigError(f"{key}: {name!r} is not a class")
    missing = [m for m in REQUIRED if not callable(getattr(cls, m, None))]
    if missing:
        raise ConfigError(f"{key}: {name!r} does not implement the workload protocol of workloads/base.py "
                          f"(missing {', '.join(missing)})")
    opts = getattr(cls, "Options", None)
    if opts is not None and not (isinstance(opts, type) and is_dataclass(opts)):
        raise ConfigError(f"{key}: {name!r}.Options must be a dataclass of the workload's options")
    bare = [f.name for f in fields(opts) if f.default is MISSING and f.default_factory is MISSING] if opts else []
    if bare:
        raise ConfigError(f"{key}: {name!r}.Options.{bare[0]} has no default (every workload option needs one)")
    return cls


def options_type(name: str, prefix: str = "workload") -> type:
    """The dataclass that validates `workload.options` for this workload (NoOptions: it takes none)."""
    from workloads.base import NoOptions

    key = f"{prefix}.name" if prefix else "name"
    if name in BUILTIN:
        return _import(BUILTIN[name][1], key, name)
    return getattr(workload_class(name, key), "Options", None) or NoOptions


def get(name: str, options: dict[str, Any] | None = None):
    """Construct a workload from its name and (already validated) options."""
    from orchestrator.config.typed import from_dict

    cls = workload_class(name)
    opts = from_dict(options_type(name), options or {}, "workload.options")
    return cls(opts) if name in BUILTIN or getattr(cls, "Options", None) else cls()


def for_config(cfg):
    """The experiment's workload, told whether its texts will go through the model's chat template
    (an optional `use_chat_template(bool)` method: the math workloads word their prompts for each case)."""
    wl = get(cfg.workload.name, cfg.workload.options)
    tell = getattr(wl, "use_chat_template", None)
    if callable(tell):
        from orchestrator.engines.chat import uses_chat

        tell(bool(cfg.model.path) and uses_chat(cfg.model.path, cfg.model.chat_template))
    return wl
