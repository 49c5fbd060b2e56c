"""Config of the pools beyond the three the theory needs (roles/roles.py has the role table).

`judge`: a separate verifier model. The theory's verifier is the policy itself (docs/theory.md §1); a judge
section puts another model in that seat -- a pool of its own actors scores the candidates, never synced (it holds
its model's version 0 for the whole run), while U(y|x) is still measured by the policy's own pools.
"""
from __future__ import annotations

from pydantic import Field, model_validator

from orchestrator.config.errors import bad
from orchestrator.config.resources import PoolResources


class JudgeConfig(PoolResources):
    """`judge`: the saved HF model folder that verifies (`path`), and its pool's actors (the fields of
    `resources.<role>`: actors, cpus, gpus, threads, custom). Same engine, dtype and chat template as `model`."""
    path: str = Field("", description="the saved model folder of the judge (required)")

    @model_validator(mode="after")
    def _has_path(self) -> "JudgeConfig":
        if not self.path:
            raise bad("required (the saved model folder of the judge); remove the judge section to let the "
                      "policy verify itself", "path")
        return self
