"""What every inference actor shares: thread count, the engine (from the registry by `model.engine`), and the
version of the weights it holds."""
from __future__ import annotations

import atexit
import math
from dataclasses import dataclass, field

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
    engine: str = "hf"  # model.engine (backends/engines.py)
    engine_options: dict = field(default_factory=dict)  # the engine's own settings, e.g. model.vllm


def set_threads(spec: WorkerSpec) -> int:
    """One torch thread per reserved CPU (at least one), unless the config says otherwise."""
    import torch

    n = spec.threads or max(1, math.floor(spec.cpus))
    torch.set_num_threads(n)
    return n


class InferenceWorker:
    """Base of the generation and verification actors: one inference engine holding one model version."""

    def __init__(self, spec: WorkerSpec) -> None:
        from orchestrator.backends.engines import make_engine

        self.spec = spec
        self.threads = set_threads(spec)
        self.backend = make_engine(spec.engine, spec.source.resolve(), device=spec.device, dtype=spec.dtype,
                                   threads=self.threads, options=spec.engine_options)
        atexit.register(self.close)  # a normal actor exit ends the engine's processes too
        self._base_fingerprint = self.backend.base_fingerprint()

    def require(self, version: int) -> None:
        """A stale engine refuses to work: every round names the version it expects."""
        from orchestrator.weights import StaleWeightsError

        held = self.backend.version
        if version != held:
            raise StaleWeightsError(f"{self.spec.role} actor holds model version {held} but was asked to work with "
                                    f"version {version}; refusing stale weights")

    def load_weights(self, update) -> int:
        """Load a published model version (AdapterUpdate or FullUpdate); returns the version now held."""
        return self.backend.load_weights(update)

    def version(self) -> int:
        return self.backend.version

    def base_fingerprint(self) -> str:
        return self._base_fingerprint

    def engine_pids(self) -> list[int]:
        """Processes the engine runs besides this actor (vLLM's engine core); checked to be gone after shutdown."""
        return list(getattr(self.backend, "pids", lambda: [])())

    def close(self) -> bool:
        """End the engine's processes now (ActorGroup.shutdown calls it before killing the actor: an actor ended
        by os._exit would leave vLLM's engine processes running)."""
        self.backend.shutdown()
        return True
