"""Training actors: one rank each of the trainer chosen by `training.engine` (trainers/base.py registry).

The group (roles/group.py, ranks=True) hands every actor its rank; `join` builds the trainer, which for DeepSpeed
forms the torch.distributed group -- so all ranks join, train and close together. Rank 0 returns the update.
"""
from __future__ import annotations

from pathlib import Path

import ray

from orchestrator.trainers.base import RankEnv, TrainingExample, TrainingStats, make_trainer
from orchestrator.config import TrainingConfig
from orchestrator.errors import SvgapError
from orchestrator.roles.group import RankedActor
from orchestrator.roles.worker import WorkerSpec, set_threads
from orchestrator.engines.weights import WeightsUpdate


class TrainingWorker(RankedActor):
    def __init__(self, spec: WorkerSpec, cfg: TrainingConfig, seed: int) -> None:
        set_threads(spec)
        self.spec, self.cfg, self.seed = spec, cfg, seed
        self.trainer = None

    def peak_rss_mb(self) -> float:
        from orchestrator.roles.worker import peak_rss_mb

        return peak_rss_mb()

    def join(self, env: dict) -> int:
        """Build this rank's trainer (a collective for multi-rank engines); returns the rank."""
        import atexit

        rank = RankEnv(int(env["RANK"]), int(env["WORLD_SIZE"]), int(env["LOCAL_RANK"]), str(env["MASTER_ADDR"]),
                       int(env["MASTER_PORT"]))
        cls = make_trainer(self.cfg.engine)
        self.trainer = cls(self.spec.source.resolve(), self.cfg, device=self.spec.device, dtype=self.spec.dtype,
                           seed=self.seed, env=rank, chat_template=self.spec.source.chat_template,
                           system_prompt=self.spec.source.system_prompt)
        atexit.register(self.trainer.close)
        return rank.rank

    def _t(self):
        if self.trainer is None:
            raise SvgapError("training actor used before it joined its rank group")
        return self.trainer

    def train(self, examples: list[TrainingExample], round_t: int) -> tuple[TrainingStats, WeightsUpdate | None]:
        return self._t().train(examples, round_t)

    @ray.method(num_returns=2)
    def train_update(self, examples: list[TrainingExample], round_t: int) -> tuple[tuple, WeightsUpdate | None]:
        """`train` with π_{t+1} as a second return: it stays in the object store, and the driver, which owns it,
        holds only its reference -- ((stats, (version, bytes) or None), update)."""
        stats, update = self.train(examples, round_t)
        return (stats, None if update is None else (update.version, update.nbytes())), update

    def version(self) -> int:
        return self._t().version

    def base_fingerprint(self) -> str:
        return self._t().base_fingerprint()

    def save(self, directory: str) -> None:
        self._t().save(Path(directory))

    def restore(self, directory: str) -> int:
        return self._t().restore(Path(directory))

    def restore_update(self, update: WeightsUpdate) -> int:
        """Resume: put π_version back into this rank's trainer. The update comes through the object store, so the run
        folder need not be shared storage; the trainer's own restore(dir) reads it from a private temporary dir."""
        import tempfile

        with tempfile.TemporaryDirectory(prefix="svgap-restore-") as d:
            update.save(Path(d) / "update.npz")
            return self._t().restore(Path(d))

    def close(self) -> bool:
        """Leave the process group before the actor is killed."""
        if self.trainer is not None:
            self.trainer.close()
        return True
