"""Where the policy π_0 comes from: a saved HF model directory, or the workload's locally built base model.

Resolved inside every actor (not shipped from the driver), so actors on other nodes build or find the same
recipe-keyed base model in their own cache.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from orchestrator.errors import SvgapError


@dataclass(frozen=True)
class ModelSource:
    workload: str
    options: dict
    path: str | None
    cache_dir: str

    def resolve(self, progress: Callable[[str], None] | None = None) -> Path:
        if self.path:
            p = Path(self.path).expanduser()
            if not (p / "config.json").exists():
                raise SvgapError(f"model.path {p} is not a saved model directory (no config.json)")
            return p
        import workloads

        return workloads.get(self.workload, self.options).base_model(Path(self.cache_dir).expanduser(), progress)
