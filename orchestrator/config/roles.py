"""Config of the pools beyond the three the theory needs (roles/roles.py has the role table).

`judge`: a separate verifier model. The theory's verifier is the policy itself (docs/theory.md §1); a judge
section puts another model in that seat -- a pool of its own actors scores the candidates, never synced (it holds
its model's version 0 for the whole run), while U(y|x) is still measured by the policy's own pools.
"""
from __future__ import annotations

from dataclasses import dataclass

from orchestrator.config import PoolResources
from orchestrator.config.typed import ConfigError


@dataclass
class JudgeConfig(PoolResources):
    """`judge`: the saved HF model folder that verifies (`path`), and its pool's actors (the fields of
    `resources.<role>`: actors, cpus, gpus, threads, custom). Same engine, dtype and chat template as `model`."""
    path: str = ""

    def validate(self, prefix: str) -> None:
        super().validate(prefix)
        if not self.path:
            raise ConfigError(f"{prefix}.path: required (the saved model folder of the judge); remove the "
                              f"{prefix} section to let the policy verify itself")
