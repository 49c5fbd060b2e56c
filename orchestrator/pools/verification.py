"""Verification actors: the same model scores its own candidates, s in [0, 1] (THEORY §1 step 3)."""
from __future__ import annotations

from orchestrator.pools.worker import InferenceWorker


class VerificationWorker(InferenceWorker):
    def score(self, queries: list, version: int, method: str, batch_size: int) -> list[float]:
        """queries are TFQuery or QEQuery objects built by the workload's templates."""
        self.weights.require(version, "verification actor")
        if method == "tf":
            return self.backend.tf_score(queries, batch_size=batch_size)
        return self.backend.qe_score(queries, batch_size=batch_size)
