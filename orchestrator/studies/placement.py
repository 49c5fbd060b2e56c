"""What one trial reserves: its own small bundle, then every pool's bundles (PoolSpec.bundle, the same the pools
would ask for outside a study), as one Tune PlacementGroupFactory. The experiment inside the trial places pool i's
actors on the bundle indices this module hands it.

Measured (Ray 2.60): a head bundle of {"CPU": 0} made the actors' bundle indices invalid, so the trial's own
process -- the experiment's controller: prompts, best-of-N, fits, MLflow -- gets a small CPU share, HEAD_CPU.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from orchestrator.roles import ray_session
from orchestrator.config import ExperimentConfig
from orchestrator.roles.group import PoolSpec

HEAD_CPU = 0.1
ROLES = ("generation", "verification", "training")


@dataclass(frozen=True)
class TrialBundles:
    bundles: list[dict[str, float]]    # bundle 0 is the trial's own
    roles: dict[str, list[int]]        # role -> bundle indices; training absent = it shares generation's
    strategy: str

    @property
    def colocated(self) -> bool:
        return "training" not in self.roles

    def total(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for b in self.bundles:
            for k, v in b.items():
                out[k] = out.get(k, 0.0) + v
        return out


def trial_bundles(cfg: ExperimentConfig, have: dict[str, float]) -> TrialBundles:
    """The bundles of one trial on a cluster with `have` resources in all. Training shares the generation
    bundles when resources.colocate_training says so -- with `auto`, when the pools plus the trial's own share
    would not fit on the cluster (a 2-core machine: 2.0 CPUs of pools + 0.1)."""
    r = cfg.resources
    room = dict(have)
    room["CPU"] = room.get("CPU", 0.0) - HEAD_CPU
    colocate = ray_session.training_colocates(r, room)
    bundles: list[dict[str, float]] = [{"CPU": HEAD_CPU}]
    roles: dict[str, list[int]] = {}
    for role in ROLES:
        if role == "training" and colocate:
            continue
        res = getattr(r, role)
        spec = PoolSpec(role, res, r.placement, r.timeout_s)
        roles[role] = list(range(len(bundles), len(bundles) + res.actors))
        bundles += [spec.bundle() for _ in range(res.actors)]
    return TrialBundles(bundles, roles, r.placement)


def factory(tb: TrialBundles):
    from ray.tune.execution.placement_groups import PlacementGroupFactory

    return PlacementGroupFactory(tb.bundles, strategy=tb.strategy)


def concurrency(want: dict[str, float], have: dict[str, float]) -> int:
    """How many trials the cluster holds at once: min over CPU/GPU of floor(have / want), at least 1."""
    slots = []
    for kind in ("CPU", "GPU"):
        w = want.get(kind, 0.0)
        if w > 0:
            slots.append(int(math.floor(have.get(kind, 0.0) / w + 1e-9)))
    return max(1, min(slots)) if slots else 1
