"""Plain data <-> typed options, for the workload plug-ins' option dataclasses and the older `from_dict` API.

Why it stays: a workload declares its options as a dataclass (workloads/README.md), with ranges in field metadata
(`field(default=3, metadata=rng(1, 6))`). Such a dataclass is validated by the same pydantic machinery as the
experiment config: it is turned into a `Section` model once, so every unknown key, wrong type and out-of-range
value reads the same way.
"""
from __future__ import annotations

import dataclasses
import functools
import types
import typing
from typing import Annotated, Any, get_args, get_origin

from pydantic import BaseModel, Field, ValidationError, create_model

from orchestrator.config.errors import ConfigError, from_validation
from orchestrator.config.fields import NUMBER as _NUMBER, Num, Range, Section  # noqa: F401 - _NUMBER: old name

__all__ = ["ConfigError", "rng", "from_dict", "to_dict", "flatten"]


def rng(lo: float | None = None, hi: float | None = None, *, lo_open: bool = False) -> dict:
    """Dataclass field metadata for a numeric range [lo, hi] (or (lo, hi] with lo_open)."""
    return {"range": (lo, hi, lo_open)}


def _lenient_floats(tp: Any) -> Any:
    """float -> Num (YAML's `5e-4` text is a number) inside optionals and lists too."""
    if tp is float:
        return Num
    origin = get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return typing.Union[tuple(_lenient_floats(a) for a in get_args(tp))]
    if origin is list:
        return list[_lenient_floats(get_args(tp)[0])]  # type: ignore[misc]
    return tp


@functools.lru_cache(maxsize=None)
def options_model(cls: type) -> type[Section]:
    """The Section model that validates dataclass `cls` (same fields, defaults and ranges)."""
    hints = typing.get_type_hints(cls)
    spec: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        tp = _lenient_floats(hints[f.name])
        if "range" in f.metadata:
            lo, hi, lo_open = f.metadata["range"]
            tp = Annotated[tp, Range(lo, hi, lo_open)]
        if f.default is not dataclasses.MISSING:
            spec[f.name] = (tp, f.default)
        elif f.default_factory is not dataclasses.MISSING:
            spec[f.name] = (tp, Field(default_factory=f.default_factory))
        else:
            spec[f.name] = (tp, ...)
    return create_model(f"{cls.__name__}Model", __base__=Section, __doc__=cls.__doc__, **spec)


def from_dict(cls: type, data: Any, prefix: str = "") -> Any:
    """Build `cls` (a config Section or an options dataclass) from a mapping, strictly: unknown keys, bad types,
    bad ranges are one ConfigError naming `prefix.key`; then the object's own `validate(prefix)`, if any."""
    model = cls if isinstance(cls, type) and issubclass(cls, BaseModel) else options_model(cls)
    try:
        checked = model.model_validate({} if data is None else data)
    except ValidationError as e:
        raise from_validation(e, prefix) from None
    if model is cls:
        return checked
    obj = cls(**{name: getattr(checked, name) for name in model.model_fields})
    check = getattr(obj, "validate", None)
    if callable(check):
        check(prefix)
    return obj


def to_dict(obj: Any) -> Any:
    """Config or options object -> plain YAML-able data (lists, dicts, scalars)."""
    if isinstance(obj, BaseModel):
        return to_dict(obj.model_dump(mode="python"))
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def flatten(data: dict, prefix: str = "") -> dict[str, Any]:
    """{'a': {'b': 1}} -> {'a.b': 1}: the form MLflow params and `--set` use."""
    out: dict[str, Any] = {}
    for k, v in data.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, dict) and v:
            out.update(flatten(v, key))
        else:
            out[key] = v
    return out
