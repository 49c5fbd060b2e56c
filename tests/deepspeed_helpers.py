"""A training actor for trainers/test_deepspeed.py that can rebuild its trainer with another config inside the same rank
group (torch.distributed stays up), so one pair of Ray actors checks both LoRA and full fine-tuning."""
from __future__ import annotations

from orchestrator.roles.training import TrainingWorker


class SwitchingTrainingWorker(TrainingWorker):
    def join(self, env: dict) -> int:
        self.env = env
        return super().join(env)

    def switch(self, cfg) -> int:
        """A new trainer (with `cfg`) on the same rank; the old one is dropped without leaving the group."""
        self.cfg, self.trainer = cfg, None
        return super().join(self.env)
