"""Workload registry: name -> options dataclass (light, no torch) and constructor."""
from __future__ import annotations

from typing import Any

from orchestrator.typed import ConfigError

KNOWN = ("arithmetic",)


def _unknown(name: str, key: str) -> ConfigError:
    return ConfigError(f"{key}: unknown workload {name!r} (known: {', '.join(KNOWN)})")


def options_type(name: str, prefix: str = "workload") -> type:
    """The dataclass that validates `workload.options` for this workload."""
    if name == "arithmetic":
        from workloads.arithmetic.options import ArithmeticOptions

        return ArithmeticOptions
    raise _unknown(name, f"{prefix}.name" if prefix else "name")


def get(name: str, options: dict[str, Any] | None = None):
    """Construct a workload from its name and (already validated) options."""
    if name == "arithmetic":
        from workloads.arithmetic.workload import ArithmeticWorkload
        from orchestrator.typed import from_dict

        return ArithmeticWorkload(from_dict(options_type(name), options or {}, "workload.options"))
    raise _unknown(name, "workload.name")
