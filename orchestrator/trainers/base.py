"""The trainer interface and its registry (keyed by `training.engine`).

A trainer owns the trainable copy of the policy on one rank. `train(examples, round)` runs round t's SFT and returns
its stats and π_{t+1} as a weights update (a LoRA adapter or the full weights; `None` on ranks other than 0, which
only help), `save(dir)` / `restore(dir)` keep it across a resume. The training actor gets a trainer from
`make_trainer`, never constructs one itself, so a new engine is one entry here.
"""
from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

from orchestrator.config import TrainingConfig
from orchestrator.config.registry import TRAINERS
from orchestrator.errors import SvgapError
from orchestrator.engines.weights import WeightsUpdate


@dataclass
class TrainingExample:
    """A (prompt, response) pair. BoN picks carry the sampled token ids; external data carries text."""
    prompt: str
    response_ids: list[int] | None = None
    response_text: str | None = None
    external: bool = False


@dataclass
class TrainingStats:
    """One round of training, as every rank saw the global batches (losses are the global batch's U_v)."""
    examples: int
    external: int
    tokens: int
    steps: int
    loss_first: float
    loss_last: float
    seconds: float
    forwarded: int = 0  # tokens the forward and backward passes ran (prompt + response, every epoch): the work done


@dataclass(frozen=True)
class RankEnv:
    """Where a rank sits in its torch.distributed group (what torchrun would export)."""
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    master_addr: str = "127.0.0.1"
    master_port: int = 29500

    def export(self) -> None:
        os.environ.update({"RANK": str(self.rank), "WORLD_SIZE": str(self.world_size),
                           "LOCAL_RANK": str(self.local_rank), "MASTER_ADDR": self.master_addr,
                           "MASTER_PORT": str(self.master_port)})


class Trainer(Protocol):
    version: int

    def train(self, examples: list[TrainingExample], round_t: int) -> tuple[TrainingStats, WeightsUpdate | None]: ...

    def update(self) -> WeightsUpdate | None: ...

    def base_fingerprint(self) -> str: ...

    def save(self, directory: str | Path) -> None: ...

    def restore(self, directory: str | Path) -> int: ...

    def close(self) -> None: ...


def check_available(engine: str) -> None:
    """Driver-side, before any actor starts: the engine is known and its package is importable (the trainer
    registry, config/registry.py: names, classes and needed packages are listed there once)."""
    TRAINERS.check(engine)


def make_trainer(engine: str) -> Callable[..., Trainer]:
    """The trainer class for `engine`: called as cls(model_dir, cfg, device=, dtype=, seed=, env=RankEnv).
    Imported only now, so the torch engine never imports DeepSpeed."""
    TRAINERS.check(engine)
    module, _, name = TRAINERS.target(engine).partition(":")
    try:
        return getattr(importlib.import_module(module), name)
    except ImportError as e:
        raise SvgapError(f"training.engine {engine}: cannot import it here ({type(e).__name__}: {e})") from None

