"""`training`: LoRA (or full) SFT on the best-of-N picks, by the torch or the DeepSpeed trainer."""
from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field, model_validator

from orchestrator.config.errors import ConfigError, bad
from orchestrator.config.fields import Num, Range, Section
from orchestrator.config.registry import TRAINERS, Named

LORA_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


class DeepSpeedSection(Section):
    """`training.deepspeed`: how the DeepSpeed engine trains (trainers/deepspeed.py). The global batch is
    training.batch_size whatever the number of ranks K: micro_batch x accumulation x K = batch_size, with the
    accumulation derived (micro_batch null = batch_size / K, no accumulation). `ds_config` is merged last over the
    DeepSpeed config svgap builds, for experts (DeepSpeed itself judges it when the ranks start)."""
    zero_stage: Annotated[int, Range(0, 3)] = Field(2, description="ZeRO stage")
    micro_batch: Annotated[int | None, Range(1)] = Field(None, description="examples per rank per step")
    gradient_clipping: Annotated[Num, Range(0.0)] = Field(1.0, description="max global grad norm; 0 = off")
    precision: Literal["fp32", "bf16"] = Field("fp32", description="bf16: bf16 weights/activations, fp32 master "
                                                                   "weights")
    offload_optimizer: bool = Field(False, description="optimizer states in CPU memory (ZeRO 1-3)")
    timeout_s: Annotated[Num, Range(0.0, lo_open=True)] = Field(300.0, description="a lost peer: error, not a hang")
    ds_config: dict = Field(default_factory=dict, description="merged last over the DeepSpeed config svgap builds")

    def micro_and_accumulation(self, batch_size: int, ranks: int, prefix: str = "training") -> tuple[int, int]:
        """(micro-batch per rank, gradient accumulation steps) giving the global batch `batch_size` on K ranks."""
        micro = self.micro_batch or batch_size // ranks
        if micro < 1 or batch_size % (micro * ranks):
            how = (f"micro_batch {self.micro_batch} x {ranks} ranks" if self.micro_batch
                   else f"{ranks} ranks")
            raise ConfigError(f"{prefix}.batch_size: {batch_size} is not a multiple of {how}; the global batch "
                              f"must split evenly (set training.deepspeed.micro_batch or training.batch_size)")
        return micro, batch_size // (micro * ranks)

    @model_validator(mode="after")
    def _offload(self) -> "DeepSpeedSection":
        if self.offload_optimizer and self.zero_stage == 0:
            raise bad("needs zero_stage 1, 2 or 3 (got 0)", "offload_optimizer")
        return self


class TrainingConfig(Section):
    """LoRA SFT on the BoN picks; the loss is U_v(t) itself (docs/theory.md §1)."""
    lora_rank: Annotated[int, Range(1)] = Field(8, description="rank r of the LoRA adapters")
    lora_alpha: Annotated[Num, Range(0.0, lo_open=True)] = Field(16.0, description="LoRA scaling alpha (alpha/r)")
    lora_dropout: Annotated[Num, Range(0.0, 1.0)] = Field(0.0, description="dropout on the LoRA path")
    target_modules: list[str] = Field(default_factory=lambda: list(LORA_MODULES),
                                      description="the modules LoRA adapts")
    lr: Annotated[Num | None, Range(0.0, 1.0, lo_open=True)] = Field(
        None, description="null: 2e-3 with LoRA, 3e-4 with full fine-tuning (every weight moves; 2e-3 diverged "
                          "here)")
    epochs: Annotated[int, Range(1)] = Field(2, description="passes over a round's picks")
    batch_size: Annotated[int, Range(1)] = Field(32, description="the global batch, whatever the number of ranks")
    weight_decay: Annotated[Num, Range(0.0)] = Field(0.0, description="AdamW weight decay")
    engine: Annotated[str, Named(TRAINERS)] = Field("torch", description="trainer (trainer registry, config/registry.py): torch = one process; "
                                             "deepspeed = a data-parallel ZeRO group of resources.training.actors "
                                             "ranks")
    mode: Literal["lora", "full"] = Field("lora", description="lora publishes an adapter per round; full fine-tunes "
                                                              "every weight and publishes the full weights")
    deepspeed: DeepSpeedSection = Field(default_factory=DeepSpeedSection)

    LORA_ONLY: ClassVar[tuple[str, ...]] = ("lora_rank", "lora_alpha", "lora_dropout", "target_modules")
    DEFAULT_LR: ClassVar[dict[str, float]] = {"lora": 2e-3, "full": 3e-4}

    @property
    def learning_rate(self) -> float:
        """`lr`, or the mode's default when it is null."""
        return self.lr if self.lr is not None else self.DEFAULT_LR[self.mode]

    @model_validator(mode="after")
    def _consistent(self) -> "TrainingConfig":
        if self.engine != "deepspeed" and self.deepspeed != DeepSpeedSection():
            raise bad(f"set, but training.engine is {self.engine} (the section configures the deepspeed engine "
                      f"only)", "deepspeed")
        if self.mode == "full":
            for name in self.LORA_ONLY:
                if getattr(self, name) != TrainingConfig.model_fields[name].get_default(call_default_factory=True):
                    raise bad("a LoRA option, but training.mode is full (every weight is trained); remove it or "
                              "use training.mode lora", name)
        return self
