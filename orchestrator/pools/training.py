"""Training actor: LoRA SFT on the round's training set; returns the new adapter for weight sync.

One trainer now; the interface (train(examples, round) -> stats + adapter) is what a DeepSpeed data-parallel
group will implement later, each rank taking a shard.
"""
from __future__ import annotations

from orchestrator.backends.lora import TrainingExample, TrainingStats
from orchestrator.config import TrainingConfig
from orchestrator.pools.worker import WorkerSpec, set_threads
from orchestrator.weights import AdapterUpdate


class TrainingWorker:
    def __init__(self, spec: WorkerSpec, cfg: TrainingConfig, seed: int) -> None:
        from orchestrator.backends.lora import LoRATrainer

        set_threads(spec)
        self.trainer = LoRATrainer(spec.source.resolve(), cfg, device=spec.device, dtype=spec.dtype, seed=seed)

    def train(self, examples: list[TrainingExample], round_t: int) -> tuple[TrainingStats, AdapterUpdate]:
        stats = self.trainer.train(examples, round_t)
        return stats, self.trainer.adapter()

    def version(self) -> int:
        return self.trainer.version

    def base_fingerprint(self) -> str:
        from orchestrator.weights import base_fingerprint

        return base_fingerprint(self.trainer.model)  # lora_ tensors are skipped: the frozen base only

    def restore(self, update: AdapterUpdate) -> int:
        self.trainer.load_adapter(update)
        return self.trainer.version
