"""Options of the arithmetic workload (validated from `workload.options`; importable without torch).

Every field is part of the base-model recipe: changing any of them builds (and caches) a different model.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from orchestrator.config.typed import ConfigError, rng

OPS = ("+", "-")


@dataclass
class ArithmeticOptions:
    """Synthetic d-digit problems `a op b=`, answers reversed (least significant digit first) and zero-padded to
    digits + 1 characters, and the recipe of the tiny Llama pretrained on them."""
    digits: int = field(default=3, metadata=rng(1, 6))
    ops: list[str] = field(default_factory=lambda: ["+"])
    heldout_fraction: float = field(default=0.1, metadata=rng(0.0, 0.5, lo_open=True))
    # -- base model recipe (pretrain.py) --
    seed: int = 0
    hidden_size: int = field(default=64, metadata=rng(16, 1024))
    mlp_ratio: int = field(default=4, metadata=rng(1, 8))
    layers: int = field(default=4, metadata=rng(1, 12))
    heads: int = field(default=4, metadata=rng(1, 16))
    init_std: float = field(default=0.1, metadata=rng(0.0, 1.0, lo_open=True))  # 0.02 (HF default) plateaus
    lr: float = field(default=6e-3, metadata=rng(0.0, 1.0, lo_open=True))
    batch_size: int = field(default=128, metadata=rng(8, 4096))
    verify_share_first: float = field(default=0.7, metadata=rng(0.0, 1.0))  # verifying examples in phase 1
    verifier_ready_auc: float = field(default=0.95, metadata=rng(0.5, 1.0))  # ends phase 1
    verify_share: float = field(default=0.5, metadata=rng(0.0, 1.0))  # verifying examples in phase 2
    qe_share: float = field(default=0.5, metadata=rng(0.0, 1.0))  # of the verifying examples, + QE grade
    target_accuracy: float = field(default=0.4, metadata=rng(0.0, 1.0, lo_open=True))  # ends phase 2
    max_steps: int = field(default=4000, metadata=rng(1))
    max_seconds: float = field(default=600.0, metadata=rng(1.0))  # safety cap; normally the target stops it

    def validate(self, prefix: str) -> None:
        key = f"{prefix}.ops" if prefix else "ops"
        if not self.ops:
            raise ConfigError(f"{key}: needs at least one of {', '.join(OPS)}")
        for op in self.ops:
            if op not in OPS:
                raise ConfigError(f"{key}: {op!r} is not allowed (choose from {', '.join(OPS)})")
        if len(set(self.ops)) != len(self.ops):
            raise ConfigError(f"{key}: duplicate operator in {self.ops}")
        if self.hidden_size % self.heads:
            k = f"{prefix}.heads" if prefix else "heads"
            raise ConfigError(f"{k}: {self.heads} must divide hidden_size ({self.hidden_size})")
