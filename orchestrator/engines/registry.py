"""Inference engines by name (`model.engine`): the actors ask this module, they never construct an engine.

The names, their classes and the packages they need are the engine registry of config/registry.py (the one
registry shape of engines, trainers and workloads). Imports are lazy: an engine's package (vLLM) is imported only
inside the actors that run it.
"""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from orchestrator.config.registry import ENGINES as REGISTRY
from orchestrator.config.registry import Entry as EngineEntry
from orchestrator.engines.base import InferenceEngine
from orchestrator.errors import SvgapError

ENGINES: dict[str, EngineEntry] = REGISTRY.builtins  # the built-ins (tests patch an entry here)


def check_available(name: str) -> None:
    """Named error before any actor starts: an unknown engine, or one whose package is not installed."""
    REGISTRY.check(name)  # a ConfigError: one line naming model.engine


def make_engine(name: str, model_dir: str | Path, *, device: str, dtype: str, threads: int,
                options: dict[str, Any] | None = None, chat_template: str = "auto",
                system_prompt: str | None = None) -> InferenceEngine:
    """Build engine `name` on the model folder; `options` are the engine's own settings (model.vllm);
    `chat_template` is model.chat_template (engines/chat.py), for engines that take it."""
    import inspect

    from orchestrator.engines.chat import uses_chat

    check_available(name)
    module, _, cls = REGISTRY.target(name).partition(":")
    engine_cls = getattr(importlib.import_module(module), cls)
    kwargs = {"options": options} if options is not None and name != "hf" else {}
    if "chat_template" in inspect.signature(engine_cls).parameters:
        kwargs["chat_template"] = chat_template
        kwargs["system_prompt"] = system_prompt
    elif uses_chat(model_dir, chat_template):  # the trainer would open conversations otherwise than the engine
        raise SvgapError(f"model.engine {name} does not apply chat templates yet and {model_dir} has one; set "
                         f"model.chat_template: none (plain prompts) or model.engine: hf")
    return engine_cls(model_dir, device=device, dtype=dtype, threads=threads, **kwargs)


def engine_options(cfg) -> dict[str, Any]:
    """The options an experiment's inference engine is built with (model.vllm, plus what the trainer will publish:
    LoRA adapters of these modules, or full weights)."""
    if cfg.model.engine != "vllm":
        return {}
    return {**cfg.model.vllm.model_dump(), "lora": cfg.training.mode == "lora",
            "lora_target_modules": list(cfg.training.target_modules)}


def check_model(name: str, model_dir: str | Path) -> None:
    """Checks an engine can make of a model folder before any actor starts (the controller resolved it)."""
    if name == "vllm":
        from orchestrator.engines.vllm import check_supported

        check_supported(Path(model_dir))
