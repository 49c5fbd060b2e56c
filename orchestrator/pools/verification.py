"""Verification actors: the same model scores its own candidates, s in [0, 1] (docs/theory.md §1), and measures
their uncertainty by teacher forcing (step 2)."""
from __future__ import annotations

from orchestrator.pools.worker import InferenceWorker


class VerificationWorker(InferenceWorker):
    def score(self, queries: list, version: int, method: str, batch_size: int) -> list[float]:
        """queries are TFQuery or QEQuery objects built by the workload's templates."""
        self.require(version)
        if method == "tf":
            return self.backend.tf_score(queries, batch_size=batch_size)
        return self.backend.qe_score(queries, batch_size=batch_size)

    def uncertainty(self, items: list[tuple[str, list[int]]], version: int, batch_size: int) -> list[float]:
        """items = (prompt, response token ids); returns U(y|x) = total teacher-forced NLL of each response."""
        self.require(version)
        scored = self.backend.score([p for p, _ in items], [list(r) for _, r in items], batch_size=batch_size)
        return [s.nll for s in scored]

    def verify(self, items: list[tuple], version: int, method: str, scored: bool,
               batch_size: int) -> list[tuple[float, float | None]]:
        """items = (query, prompt, response token ids) per candidate; returns (score, U(y|x) or None) per item.
        One call per shard: the engine may score the queries and the responses in one pass."""
        self.require(version)
        queries = [q for q, _, _ in items]
        responses = [(p, list(r)) for _, p, r in items] if scored else None
        scores, us = self.backend.verify(queries, method, responses, batch_size=batch_size)
        return [(s, us[i].nll if us is not None else None) for i, s in enumerate(scores)]
