"""The whole experiment config: every section, and the checks that read more than one section."""
from __future__ import annotations

from typing import Annotated

from pydantic import Field, model_serializer, model_validator

from orchestrator.config.errors import ConfigError, bad
from orchestrator.config.fields import Range, Section
from orchestrator.config.model import ModelConfig
from orchestrator.config.resources import ResourcesConfig
from orchestrator.config.roles import JudgeConfig
from orchestrator.config.rounds import GenerationConfig, VerificationConfig
from orchestrator.config.theory import ExternalConfig, FitConfig, StopConfig
from orchestrator.config.tracking import TrackingConfig
from orchestrator.config.training import TrainingConfig
from orchestrator.config.workload import WorkloadConfig


class ExperimentConfig(Section):
    """One self-improvement experiment: rounds 0..T of sample, verify, pick, train (docs/theory.md §1)."""
    workload: WorkloadConfig = Field(default_factory=WorkloadConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    generation: GenerationConfig = Field(default_factory=GenerationConfig)
    verification: VerificationConfig = Field(default_factory=VerificationConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    rounds: Annotated[int, Range(1)] = Field(8, description="training rounds T")
    seed: int = Field(0, description="seeds prompts, sampling and training")
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    resources: ResourcesConfig = Field(default_factory=ResourcesConfig)
    fit: FitConfig = Field(default_factory=FitConfig)
    stop: StopConfig = Field(default_factory=StopConfig)
    external: ExternalConfig = Field(default_factory=ExternalConfig)
    judge: JudgeConfig | None = Field(None, description="a separate verifier model and its pool (config/roles.py); "
                                    "null: the policy verifies itself")

    @model_serializer(mode="wrap")
    def _dump(self, handler) -> dict:
        """No `judge: null` in a dump: configs and MLflow params of runs without a judge stay as before it."""
        data = handler(self)
        if isinstance(data, dict) and data.get("judge") is None:
            data.pop("judge", None)
        return data

    @model_validator(mode="after")
    def _across_sections(self) -> "ExperimentConfig":
        if self.model.engine == "vllm" and self.training.mode == "lora" \
                and self.training.lora_rank > self.model.vllm.max_lora_rank:
            raise bad(f"{self.model.vllm.max_lora_rank} is below training.lora_rank {self.training.lora_rank}; the "
                      f"vLLM engine could not load the adapters", "model.vllm.max_lora_rank")
        ranks = self.resources.training.actors
        if self.training.engine == "torch" and ranks != 1:
            raise bad(f"{ranks} ranks need training.engine deepspeed (the torch engine trains in one process)",
                      "resources.training.actors")
        if self.training.engine == "deepspeed":
            try:
                self.training.deepspeed.micro_and_accumulation(self.training.batch_size, ranks)
            except ConfigError as e:
                raise bad(str(e), absolute=True) from None
        self._external()
        return self

    def _external(self) -> None:
        ext = self.external
        if ext.strategy == "explicit" and ext.shares is None:
            raise bad("required when external.strategy is explicit", "external.shares")
        if ext.shares is not None:
            if len(ext.shares) != self.rounds:
                raise bad(f"has {len(ext.shares)} entries, expected one per training round ({self.rounds})",
                          "external.shares")
            if any(s < 0 for s in ext.shares) or abs(sum(ext.shares) - 1.0) > 1e-6:
                raise bad(f"must be non-negative and sum to 1 (sum is {sum(ext.shares):g})", "external.shares")
        if ext.strategy != "none" and ext.budget < 1:
            raise bad(f"must be >= 1 with external.strategy {ext.strategy}", "external.budget")
