"""The building blocks of every config section: strict types, numeric ranges, and the `Section` base model.

Why strict: a YAML `1` is not `true` and `"8"` is not 8, so a typo is an error naming its key instead of a silent
coercion. One exception, kept from before: YAML 1.1 reads `5e-4` (no dot) as text, so a number field takes it.
"""
from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, model_validator
from pydantic_core import core_schema

from orchestrator.config.errors import bad

NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def _yaml_number(value: Any) -> Any:
    if isinstance(value, str) and NUMBER.fullmatch(value.strip()):
        return float(value)
    return value


Num = Annotated[float, BeforeValidator(_yaml_number)]  # a float field: ints and YAML's dotless exponents too


@dataclass(frozen=True)
class Range:
    """A numeric range [lo, hi] (or (lo, hi] with lo_open) checked after the type; null passes (optional keys)."""
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False

    def text(self) -> str:
        lo = "-inf" if self.lo is None else f"{self.lo:g}"
        hi = "inf" if self.hi is None else f"{self.hi:g}"
        return f"{'(' if self.lo_open else '['}{lo}, {hi}]"

    def check(self, value: Any) -> Any:
        for v in value if isinstance(value, list) else [value]:
            if v is None:
                continue
            low = self.lo is not None and (v <= self.lo if self.lo_open else v < self.lo)
            if low or (self.hi is not None and v > self.hi):
                raise bad(f"{v!r} is out of range (allowed {self.text()})")
        return value

    def __get_pydantic_core_schema__(self, source: Any, handler: Any) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(self.check, handler(source))


def merge(base: dict, over: dict) -> dict:
    """`over` laid on `base`, section by section (a partial section keeps the rest of its defaults)."""
    out = dict(base)
    for k, v in over.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


class Section(BaseModel):
    """A config section: strict types, unknown keys refused (naming the known ones), a partial sub-section
    completed from the field's own default (e.g. resources.generation's 2 actors x 0.5 CPU), not the class's."""
    model_config = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False, validate_default=False)

    @model_validator(mode="before")
    @classmethod
    def _section(cls, data: Any) -> Any:
        if data is None:
            data = {}
        if isinstance(data, BaseModel):
            return data
        if not isinstance(data, dict):
            raise bad(f"expected a mapping, got {data!r}")
        unknown = sorted(set(data) - set(cls.model_fields), key=str)
        if unknown:
            raise bad(f"unknown key (known keys here: {', '.join(sorted(cls.model_fields))})", str(unknown[0]))
        data = dict(data)
        for name, info in cls.model_fields.items():
            if info.default_factory is None:
                continue
            default = info.default_factory()  # type: ignore[call-arg]
            if isinstance(default, Section) and name in data and isinstance(data[name] or {}, dict):
                data[name] = merge(default.model_dump(exclude_unset=True), data[name] or {})
        return data

    def to_dict(self) -> dict:
        """Plain YAML-able data (the saved config.yaml)."""
        return copy.deepcopy(self.model_dump(mode="python"))
