"""Verification actors: the same model scores its own candidates, s in [0, 1] (docs/theory.md §1), and measures
their uncertainty by teacher forcing (step 2). `verify` (both at once) and `uncertainty` are on every inference actor
(worker.py); a judge pool (roles/roles.py) runs this class on its own model."""
from __future__ import annotations

from orchestrator.roles.worker import InferenceWorker


class VerificationWorker(InferenceWorker):
    def score(self, queries: list, version: int, method: str, batch_size: int) -> list[float]:
        """queries are TFQuery or QEQuery objects built by the workload's templates."""
        self.require(version)
        if method == "tf":
            return self.backend.tf_score(queries, batch_size=batch_size)
        return self.backend.qe_score(queries, batch_size=batch_size)
