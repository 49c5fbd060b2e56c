"""`workload`: which task, how many prompts per round, and the task's own options."""
from __future__ import annotations

from dataclasses import MISSING, fields, is_dataclass
from typing import Annotated

from pydantic import BaseModel, Field, ValidationInfo, field_validator

from orchestrator.config.errors import ConfigError, bad
from orchestrator.config.fields import Range, Section
from orchestrator.config.registry import WORKLOADS, Named, import_target


class NoOptions(Section):
    """The options of a workload that declares none (`workload.options` must then be empty)."""


def options_class(name: str, key: str = "workload.name") -> type:
    """The class that validates a workload's options: an options dataclass (or Section model). Built-ins name
    it apart from the workload, so validating a config imports no torch; a plug-in's is its class's `Options`."""
    entry = WORKLOADS.builtins.get(name)
    if entry is not None and entry.options:
        return import_target(entry.options, key, f"workload {name!r}")
    cls = WORKLOADS.load(name, key)
    if not isinstance(cls, type):
        raise ConfigError(f"{key}: {name!r} is not a class")
    opts = getattr(cls, "Options", None)
    if opts is None:
        return NoOptions
    if not (isinstance(opts, type) and (is_dataclass(opts) or issubclass(opts, BaseModel))):
        raise ConfigError(f"{key}: {name!r}.Options must be a dataclass of the workload's options")
    if is_dataclass(opts):
        bare = [f.name for f in fields(opts) if f.default is MISSING and f.default_factory is MISSING]
    else:
        bare = [n for n, f in opts.model_fields.items() if f.is_required()]
    if bare:
        raise ConfigError(f"{key}: {name!r}.Options.{bare[0]} has no default (every workload option needs one)")
    return opts


def checked_options(name: str, options: dict, prefix: str = "workload") -> dict:
    """`workload.options` validated against the workload's options class, with every default filled in."""
    from orchestrator.config.typed import from_dict, to_dict

    return to_dict(from_dict(options_class(name, f"{prefix}.name"), options, f"{prefix}.options"))


class WorkloadConfig(Section):
    """Which task, how many prompts per round, and the task's own options (validated by the workload)."""
    name: Annotated[str, Named(WORKLOADS)] = Field("arithmetic", description="a built-in workload (arithmetic, chat_arithmetic, gsm8k, math), "
                      "`package.module:Class`, or a name registered under the entry-point group svgap.workloads")
    train_prompts: Annotated[int, Range(1)] = Field(256, description="prompts a round samples candidates for")
    heldout_prompts: Annotated[int, Range(1)] = Field(500, description="held-out prompts of heldout_acc")
    heldout_samples: Annotated[int, Range(1)] = Field(
        1, description="samples per held-out prompt: heldout_acc is their mean (more samples, a tighter paired "
                       "test between rounds)")
    options: dict = Field(default_factory=dict, validate_default=True, description="the workload's own options (docs: its Options class)")

    @field_validator("options")
    @classmethod
    def _options(cls, options: dict, info: ValidationInfo) -> dict:
        if "name" not in info.data:  # the name was refused already
            return options
        try:
            return checked_options(info.data["name"], options)
        except ConfigError as e:
            raise bad(str(e), absolute=True) from None
