"""Generation actors: sample N candidates per prompt with per-token logprobs (the solver, docs/theory.md §1)."""
from __future__ import annotations

from orchestrator.engines.base import Sample
from orchestrator.roles.worker import InferenceWorker


class GenerationWorker(InferenceWorker):
    def sample(self, items: list[tuple[str, int]], version: int, n: int, temperature: float,
               max_new_tokens: int, batch_size: int) -> list[list[Sample]]:
        """items = (prompt, seed) pairs; the seed alone fixes a prompt's candidates, so sharding changes nothing."""
        self.require(version)
        prompts = [p for p, _ in items]
        seeds = [s for _, s in items]
        return self.backend.sample(prompts, n=n, temperature=temperature, max_new_tokens=max_new_tokens,
                                   seeds=seeds, batch_size=batch_size)
