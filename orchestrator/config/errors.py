"""Config problems as one line naming the dotted key (`generation.n: 0 is out of range (allowed [1, inf])`).

Why its own module: the pydantic models, the `--set` parser, the registries and the plug-ins' option dataclasses all
report the same way, and the CLI prints a ConfigError as its one error line (exit 2).
"""
from __future__ import annotations

import re
from typing import Any

from pydantic import ValidationError
from pydantic_core import PydanticCustomError

from orchestrator.errors import SvgapError

SVGAP = "svgap"  # the pydantic error type our own validators raise: the text is already ours


class ConfigError(SvgapError, ValueError):
    """A config problem, already phrased as one line naming the key."""


def bad(detail: str, key: str = "", *, absolute: bool = False) -> PydanticCustomError:
    """An error raised inside a model's validator: `key` is relative to where the model sits (or, `absolute`,
    the whole dotted key; `detail` then holds the whole line)."""
    return PydanticCustomError(SVGAP, "{detail}", {"detail": detail, "key": key, "absolute": absolute})


def dotted(*parts: Any) -> str:
    """('resources', 'generation', 'custom', 'x') -> 'resources.generation.custom.x'; list indices as [i]."""
    out = ""
    for p in parts:
        if p in ("", None):
            continue
        if isinstance(p, int):
            out += f"[{p}]"
        else:
            out += f".{p}" if out else str(p)
    return out


def _choices(expected: str) -> str:
    return ", ".join(re.findall(r"'([^']*)'", expected)) or expected


_TYPES = {
    "int_type": "expected an integer", "int_from_float": "expected an integer", "int_parsing": "expected an integer",
    "bool_type": "expected true or false", "bool_parsing": "expected true or false",
    "float_type": "expected a number", "float_parsing": "expected a number",
    "string_type": "expected a string", "list_type": "expected a list",
    "dict_type": "expected a mapping", "model_type": "expected a mapping", "model_attributes_type": "expected a mapping",
    "dataclass_type": "expected a mapping",
}


def _detail(err: dict) -> str:
    kind, value = err["type"], err.get("input")
    if kind in _TYPES:
        return f"{_TYPES[kind]}, got {value!r}"
    if kind == "finite_number":
        return f"must be a finite number, got {value!r}"
    if kind == "literal_error":
        return f"{value!r} is not allowed (choose one of {_choices(err['ctx']['expected'])})"
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "none_required":
        return f"must be null, got {value!r}"
    return str(err.get("msg", kind)).replace("\n", " ")


def from_validation(e: ValidationError, prefix: str = "") -> ConfigError:
    """The first error of a pydantic ValidationError as today's one line naming the dotted key."""
    err = e.errors(include_url=False)[0]
    ctx = err.get("ctx") or {}
    loc = [p for p in err["loc"] if not (isinstance(p, str) and (p.startswith("function-") or "[" in p))]
    if err["type"] == SVGAP and ctx.get("absolute"):
        return ConfigError(ctx["detail"])
    key = dotted(prefix, *loc, ctx.get("key", "") if err["type"] == SVGAP else "") or "config"
    detail = ctx["detail"] if err["type"] == SVGAP else _detail(err)
    return ConfigError(f"{key}: {detail}")
