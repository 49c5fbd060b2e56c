"""Typed experiment config: pydantic models of every section, YAML in, `--set a.b=c` overrides, YAML out.

Every command resolves its config through `resolve` (config/resolve.py); the names a config may give an engine,
a trainer or a workload come from the registries (config/registry.py); docs/configuration.md is generated from the
models (config/reference.py).
"""
from orchestrator.config.errors import ConfigError
from orchestrator.config.experiment import ExperimentConfig
from orchestrator.config.files import (DEFAULT_CONFIG, apply_overrides, dump, from_mapping, parse_scalar, read_yaml,
                                       set_key)
from orchestrator.config.model import ModelConfig, VLLMSection
from orchestrator.config.resolve import load, resolve, resolve_mapping
from orchestrator.config.resources import PoolResources, ResourcesConfig
from orchestrator.config.rounds import GenerationConfig, VerificationConfig
from orchestrator.config.theory import ExternalConfig, FitConfig, StopConfig
from orchestrator.config.tracking import TrackingConfig
from orchestrator.config.training import DeepSpeedSection, TrainingConfig
from orchestrator.config.typed import flatten, to_dict
from orchestrator.config.workload import WorkloadConfig

_parse_scalar = parse_scalar  # the name studies/variants.py used

__all__ = ["ConfigError", "DEFAULT_CONFIG", "DeepSpeedSection", "ExperimentConfig", "ExternalConfig", "FitConfig",
           "GenerationConfig", "ModelConfig", "PoolResources", "ResourcesConfig", "StopConfig", "TrackingConfig",
           "TrainingConfig", "VLLMSection", "VerificationConfig", "WorkloadConfig", "apply_overrides", "dump",
           "flatten", "from_mapping", "load", "parse_scalar", "read_yaml", "resolve", "resolve_mapping", "set_key",
           "to_dict"]
