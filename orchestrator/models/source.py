"""Where the policy π_0 comes from: a saved HF model directory, or the workload's locally built base model.

Resolved inside every actor (not shipped from the driver), so actors on other nodes build or find the same
recipe-keyed base model in their own cache.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from orchestrator.errors import SvgapError


def system_prompt_of(cfg) -> str | None:
    """model.system_prompt, else the workload's own (a `system_prompt` attribute); "template" (or none given)
    keeps the chat template's own behaviour -- SmolLM2's, for one, adds a default system turn of its own."""
    chosen = getattr(cfg.model, "system_prompt", None)
    if chosen is None:
        import workloads

        chosen = getattr(workloads.get(cfg.workload.name, cfg.workload.options), "system_prompt", None)
    return None if chosen in (None, "template") else chosen


@dataclass(frozen=True)
class ModelSource:
    workload: str
    options: dict
    path: str | None
    cache_dir: str
    chat_template: str = "auto"  # model.chat_template: how engines and trainers open a conversation (engines/chat.py)
    system_prompt: str | None = None  # the system turn of every conversation (None: the template's own behaviour)

    @classmethod
    def of(cls, cfg) -> "ModelSource":
        """The source an experiment config names (its workload builds the model unless model.path is set)."""
        m = cfg.model
        return cls(cfg.workload.name, cfg.workload.options, m.path, m.cache_dir, getattr(m, "chat_template", "auto"),
                   system_prompt_of(cfg))

    def resolve(self) -> Path:
        if self.path:
            p = Path(self.path).expanduser()
            if not (p / "config.json").exists():
                from orchestrator.models.packaged import import_hint

                raise SvgapError(f"model.path {p} is not a saved model directory (no config.json)" + import_hint(p))
            return p
        import workloads

        wl = workloads.get(self.workload, self.options)
        if not callable(getattr(wl, "base_model", None)):
            raise SvgapError(f"workload {self.workload} builds no base model (it has no base_model method); "
                             f"set model.path to a saved model directory")
        return wl.base_model(Path(self.cache_dir).expanduser())
