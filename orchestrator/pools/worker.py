"""What every inference actor shares: thread count, the model, and the version of the weights it holds."""
from __future__ import annotations

import math
from dataclasses import dataclass

from orchestrator.model_source import ModelSource


@dataclass(frozen=True)
class WorkerSpec:
    """Everything an actor needs to build its engine, as plain data."""
    role: str
    source: ModelSource
    device: str
    dtype: str
    cpus: float
    threads: int | None


def set_threads(spec: WorkerSpec) -> int:
    """One torch thread per reserved CPU (at least one), unless the config says otherwise."""
    import torch

    n = spec.threads or max(1, math.floor(spec.cpus))
    torch.set_num_threads(n)
    return n


class InferenceWorker:
    """Base of the generation and verification actors: an HF engine plus a versioned adapter holder."""

    def __init__(self, spec: WorkerSpec) -> None:
        from orchestrator.backends.hf import HFBackend
        from orchestrator.weights import WeightsHolder, base_fingerprint

        self.spec = spec
        self.threads = set_threads(spec)
        self.backend = HFBackend(spec.source.resolve(), device=spec.device, dtype=spec.dtype, threads=self.threads)
        self.weights = WeightsHolder(self.backend.model)
        self._base_fingerprint = base_fingerprint(self.backend.model)

    def load_weights(self, update) -> int:
        """Merge a published adapter; returns the version now held."""
        return self.weights.load(update)

    def version(self) -> int:
        return self.weights.version

    def base_fingerprint(self) -> str:
        return self._base_fingerprint
