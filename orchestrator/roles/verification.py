"""Verification actors: the same model scores its own candidates, s in [0, 1] (docs/theory.md §1), and measures
their uncertainty by teacher forcing (step 2). `verify` (both at once) is on every inference actor (worker.py)."""
from __future__ import annotations

from orchestrator.roles.worker import InferenceWorker


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
