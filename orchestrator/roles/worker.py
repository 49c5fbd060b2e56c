"""What every inference actor shares: thread count, the engine (from the registry by `model.engine`), and the
version of the weights it holds."""
from __future__ import annotations

import atexit
import math
import os
from dataclasses import dataclass, field

from orchestrator.errors import SvgapError
from orchestrator.models.source import ModelSource


@dataclass(frozen=True)
class WorkerSpec:
    """Everything an actor needs to build its engine, as plain data."""
    role: str
    source: ModelSource
    device: str
    dtype: str
    cpus: float
    threads: int | None
    engine: str = "hf"  # model.engine (engines/registry.py)
    engine_options: dict = field(default_factory=dict)  # the engine's own settings, e.g. model.vllm


def normal_priority() -> int:
    """Ray starts worker processes at niceness 15 (RAY_worker_niceness) so its own daemons stay responsive; then
    any other busy process on the node takes the CPUs first, and two 0.5-CPU actors share the same leftovers one
    1-CPU actor gets: scale-out does not pay (measured here: 1.15x for 2 actors vs 1 with the node loaded, CPU time
    per actor halving as it should). The pools are the experiment's work, so they run at normal priority where the
    OS lets them (children such as vLLM's engine processes inherit it). Returns the niceness now."""
    try:
        current = os.nice(0)
        if current > 0:
            os.nice(-current)
    except OSError:  # not permitted (no CAP_SYS_NICE): keep Ray's niceness
        pass
    return os.nice(0)


def peak_rss_mb() -> float:
    """This process's peak resident memory (Linux reports ru_maxrss in KiB); vLLM's engine core is a child
    process and is counted in its own row of benchmarks/real_model_engines.py."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def set_threads(spec: WorkerSpec) -> int:
    """One torch thread per reserved CPU (at least one), unless the config says otherwise; normal CPU priority.
    Every other pool of threads an actor could start is held to the same count: torch's inter-op pool and the
    tokenizer's (both default to every core of the node, so two 1-CPU actors on 2 cores would each spin 2+)."""
    from orchestrator.engines.lean_import import lean_transformers

    normal_priority()
    n = spec.threads or max(1, math.floor(spec.cpus))
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "RAYON_NUM_THREADS"):
        os.environ[var] = str(n)
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    lean_transformers()
    import torch

    torch.set_num_threads(n)
    try:
        torch.set_num_interop_threads(n)
    except RuntimeError:  # already set, or parallel work already ran in this process
        pass
    return n


class InferenceWorker:
    """Base of the generation and verification actors: one inference engine holding one model version."""

    def __init__(self, spec: WorkerSpec) -> None:
        from orchestrator.engines.registry import make_engine

        self.spec = spec
        self.threads = set_threads(spec)
        self.start_error: str | None = None
        try:
            self.backend = make_engine(spec.engine, spec.source.resolve(), device=spec.device, dtype=spec.dtype,
                                       threads=self.threads, options=spec.engine_options,
                                       chat_template=spec.source.chat_template,
                                       system_prompt=spec.source.system_prompt)
        except Exception as e:  # noqa: BLE001 - kept, so the start call reports it once: a dead actor is retried
            first = (str(e).strip().splitlines() or [""])[0][:300]
            self.start_error = f"{type(e).__name__}: {first}" if first else type(e).__name__
            self.backend = None
            return
        atexit.register(self.close)  # a normal actor exit ends the engine's processes too
        self._base_fingerprint = self.backend.base_fingerprint()

    def _started(self):
        if self.backend is None:
            raise SvgapError(f"the {self.spec.role} engine ({self.spec.engine}) did not start: {self.start_error}")
        return self.backend

    def require(self, version: int) -> None:
        """A stale engine refuses to work: every round names the version it expects."""
        from orchestrator.engines.weights import StaleWeightsError

        held = self._started().version
        if version != held:
            raise StaleWeightsError(f"{self.spec.role} actor holds model version {held} but was asked to work with "
                                    f"version {version}; refusing stale weights")

    def verify(self, items: list[tuple], version: int, method: str, scored: bool,
               batch_size: int) -> list[tuple[float, float | None]]:
        """The verification stage's work on a shard: items = (query, prompt, response token ids) per candidate;
        returns (score, U(y|x) or None) per item. On every inference actor: all of them hold π_t, and the round
        spreads this work over the generation actors too once they have sampled."""
        self.require(version)
        queries = [q for q, _, _ in items]
        responses = [(p, list(r)) for _, p, r in items] if scored else None
        scores, us = self.backend.verify(queries, method, responses, batch_size=batch_size)
        return [(s, us[i].nll if us is not None else None) for i, s in enumerate(scores)]

    def uncertainty(self, items: list[tuple[str, list[int]]], version: int, batch_size: int) -> list[float]:
        """items = (prompt, response token ids); returns U(y|x) = total teacher-forced NLL of each response."""
        self.require(version)
        scored = self._started().score([p for p, _ in items], [list(r) for _, r in items], batch_size=batch_size)
        return [s.nll for s in scored]

    def load_weights(self, update) -> int:
        """Load a published model version (AdapterUpdate or FullUpdate); returns the version now held."""
        return self.backend.load_weights(update)

    def version(self) -> int:
        return self._started().version

    def base_fingerprint(self) -> str:
        self._started()
        return self._base_fingerprint

    def peak_rss_mb(self) -> float:
        return peak_rss_mb()

    def engine_pids(self) -> list[int]:
        """Processes the engine runs besides this actor (vLLM's engine core); checked to be gone after shutdown."""
        return list(getattr(self.backend, "pids", lambda: [])())

    def close(self) -> bool:
        """End the engine's processes now (ActorGroup.shutdown calls it before killing the actor: an actor ended
        by os._exit would leave vLLM's engine processes running)."""
        if self.backend is not None:
            self.backend.shutdown()
        return True
