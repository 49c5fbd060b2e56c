"""Options of the chat_arithmetic workload (importable without torch)."""
from __future__ import annotations

from typing import Annotated

from pydantic import Field, model_validator

from orchestrator.config.errors import bad
from orchestrator.config.fields import Num, Range, Section

OPS = ("+", "-", "*")
DEFAULT_SYSTEM = "You are a helpful assistant who answers math questions accurately."


class ChatArithmeticOptions(Section):
    """Questions `What is a op b?` for a chat model; operands from min_operand to max_operand (null: the largest
    `digits`-digit number); subtraction never goes below zero. The difficulty was set by measuring the base model
    (docs/real-model.md): SmolLM2-135M-Instruct on 0..12 with + - * has room to self-improve."""
    ops: list[str] = Field(default_factory=lambda: list(OPS), description="distinct operators from + - *")
    digits: Annotated[int, Range(1, 4)] = Field(1, description="digits of the largest operand")
    min_operand: Annotated[int, Range(0)] = Field(0, description="smallest operand")
    max_operand: Annotated[int | None, Range(1)] = Field(None, description="largest operand (null: the largest "
                                                                           "`digits`-digit number)")
    heldout_fraction: Annotated[Num, Range(0.0, 0.9, lo_open=True)] = Field(0.45, description="problems held out")
    external_fraction: Annotated[Num, Range(0.0, 0.5)] = Field(0.1, description="problems kept for external data")
    split_seed: int = Field(0, description="seeds which split a problem falls in")
    system_prompt: str = Field(DEFAULT_SYSTEM, description="the system turn of every conversation (solver and "
                               "verifier); \"template\" keeps the chat template's own default")

    @property
    def high(self) -> int:
        return self.max_operand if self.max_operand is not None else 10 ** self.digits - 1

    @model_validator(mode="after")
    def _consistent(self) -> "ChatArithmeticOptions":
        if not self.ops or any(op not in OPS for op in self.ops) or len(set(self.ops)) != len(self.ops):
            raise bad(f"{self.ops!r} must be distinct operators from {', '.join(OPS)}", "ops")
        if self.min_operand > self.high:
            raise bad(f"{self.min_operand} is above the largest operand {self.high}", "min_operand")
        if self.heldout_fraction + self.external_fraction >= 0.95:
            raise bad("with external_fraction it leaves under 5 % of the problems for training", "heldout_fraction")
        return self
