"""Options of the arithmetic workload (validated from `workload.options`; importable without torch).

Every field is part of the base-model recipe: changing any of them builds (and caches) a different model.
"""
from __future__ import annotations

from typing import Annotated

from pydantic import Field, model_validator

from orchestrator.config.errors import bad
from orchestrator.config.fields import Num, Range, Section

OPS = ("+", "-")


class ArithmeticOptions(Section):
    """Synthetic d-digit problems `a op b=`, answers reversed (least significant digit first) and zero-padded to
    digits + 1 characters, and the recipe of the tiny Llama pretrained on them."""
    digits: Annotated[int, Range(1, 6)] = Field(3, description="digits of each operand")
    ops: list[str] = Field(default_factory=lambda: ["+"], description="operators, from + and -")
    heldout_fraction: Annotated[Num, Range(0.0, 0.5, lo_open=True)] = Field(0.1, description="problems held out")
    # -- base model recipe (pretrain.py) --
    seed: int = Field(0, description="pretraining seed")
    hidden_size: Annotated[int, Range(16, 1024)] = Field(64, description="width of the tiny Llama")
    mlp_ratio: Annotated[int, Range(1, 8)] = Field(4, description="MLP width / hidden_size")
    layers: Annotated[int, Range(1, 12)] = Field(4, description="transformer layers")
    heads: Annotated[int, Range(1, 16)] = Field(4, description="attention heads (divide hidden_size)")
    init_std: Annotated[Num, Range(0.0, 1.0, lo_open=True)] = Field(0.1, description="weight init std (0.02, "
                                                                                      "the HF default, plateaus)")
    lr: Annotated[Num, Range(0.0, 1.0, lo_open=True)] = Field(6e-3, description="pretraining learning rate")
    batch_size: Annotated[int, Range(8, 4096)] = Field(128, description="pretraining batch")
    verify_share_first: Annotated[Num, Range(0.0, 1.0)] = Field(0.7, description="verifying examples in phase 1")
    verifier_ready_auc: Annotated[Num, Range(0.5, 1.0)] = Field(0.95, description="verifier ROC-AUC that ends "
                                                                                  "phase 1")
    verify_share: Annotated[Num, Range(0.0, 1.0)] = Field(0.5, description="verifying examples in phase 2")
    qe_share: Annotated[Num, Range(0.0, 1.0)] = Field(0.5, description="of the verifying examples, + QE grade")
    target_accuracy: Annotated[Num, Range(0.0, 1.0, lo_open=True)] = Field(0.4, description="solver accuracy that "
                                                                                            "ends phase 2")
    max_steps: Annotated[int, Range(1)] = Field(4000, description="pretraining steps at most")
    max_seconds: Annotated[Num, Range(1.0)] = Field(600.0, description="safety cap; normally the target stops it")

    @model_validator(mode="after")
    def _consistent(self) -> "ArithmeticOptions":
        if not self.ops:
            raise bad(f"needs at least one of {', '.join(OPS)}", "ops")
        for op in self.ops:
            if op not in OPS:
                raise bad(f"{op!r} is not allowed (choose from {', '.join(OPS)})", "ops")
        if len(set(self.ops)) != len(self.ops):
            raise bad(f"duplicate operator in {self.ops}", "ops")
        if self.hidden_size % self.heads:
            raise bad(f"{self.heads} must divide hidden_size ({self.hidden_size})", "heads")
        return self
