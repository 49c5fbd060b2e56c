"""What one trial reserves: its own small bundle, then every pool's bundles (PoolSpec.bundle, the same the pools
would ask for outside a study), as one Tune PlacementGroupFactory. The experiment inside the trial places pool i's
actors on the bundle indices this module hands it.

Measured (Ray 2.60): a head bundle of {"CPU": 0} made the actors' bundle indices invalid, so the trial's own
process -- the experiment's controller: prompts, best-of-N, fits, MLflow -- gets a small CPU share, HEAD_CPU.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from orchestrator.config import ExperimentConfig
from orchestrator.roles.roles import ROLES as TABLE, PlacementPlan

HEAD_CPU = 0.1
ROLES = tuple(r.name for r in TABLE)  # the role table's names (roles/roles.py)


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
    """The bundles of one trial on a cluster with `have` resources in all: the placement plan's pools
    (roles/roles.py), those that share another's bundles left out. Training shares the generation bundles when
    resources.colocate_training says so -- with `auto`, when the pools plus the trial's own share would not fit on
    the cluster (a 2-core machine: 2.0 CPUs of pools + 0.1)."""
    room = dict(have)
    room["CPU"] = room.get("CPU", 0.0) - HEAD_CPU
    plan = PlacementPlan.build(cfg, room)
    bundles: list[dict[str, float]] = [{"CPU": HEAD_CPU}]
    roles: dict[str, list[int]] = {}
    for p in plan.started():
        if p.host is not None:
            continue
        roles[p.name] = list(range(len(bundles), len(bundles) + p.resources.actors))
        bundles += [plan.spec(p.name).bundle() for _ in range(p.resources.actors)]
    return TrialBundles(bundles, roles, plan.strategy)


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
