"""Options of the chat_arithmetic workload (importable without torch)."""
from __future__ import annotations

from dataclasses import dataclass, field

from orchestrator.config.typed import ConfigError, rng

OPS = ("+", "-", "*")
DEFAULT_SYSTEM = "You are a helpful assistant who answers math questions accurately."


@dataclass
class ChatArithmeticOptions:
    """Questions `What is a op b?` for a chat model; operands from min_operand to max_operand (null: the largest
    `digits`-digit number); subtraction never goes below zero. The difficulty was set by measuring the base model
    (docs/real-model.md): SmolLM2-135M-Instruct on 0..12 with + - * has room to self-improve."""
    ops: list[str] = field(default_factory=lambda: list(OPS))
    digits: int = field(default=1, metadata=rng(1, 4))
    min_operand: int = field(default=0, metadata=rng(0))
    max_operand: int | None = field(default=None, metadata=rng(1))
    heldout_fraction: float = field(default=0.45, metadata=rng(0.0, 0.9, lo_open=True))
    external_fraction: float = field(default=0.1, metadata=rng(0.0, 0.5))
    split_seed: int = 0
    # the system turn of every conversation (solver and verifier); "template" keeps the chat template's own default
    system_prompt: str = DEFAULT_SYSTEM

    @property
    def high(self) -> int:
        return self.max_operand if self.max_operand is not None else 10 ** self.digits - 1

    def validate(self, prefix: str) -> None:
        key = f"{prefix}.ops" if prefix else "ops"
        if not self.ops or any(op not in OPS for op in self.ops) or len(set(self.ops)) != len(self.ops):
            raise ConfigError(f"{key}: {self.ops!r} must be distinct operators from {', '.join(OPS)}")
        if self.min_operand > self.high:
            k = f"{prefix}.min_operand" if prefix else "min_operand"
            raise ConfigError(f"{k}: {self.min_operand} is above the largest operand {self.high}")
        if self.heldout_fraction + self.external_fraction >= 0.95:
            k = f"{prefix}.heldout_fraction" if prefix else "heldout_fraction"
            raise ConfigError(f"{k}: with external_fraction it leaves under 5 % of the problems for training")
