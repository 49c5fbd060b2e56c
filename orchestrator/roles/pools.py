"""The pools of a run: one ActorGroup per role of the placement plan (roles/roles.py), each behind its facade.

Started in table order, so a role that shares another's bundles finds its host started; every actor builds its
engine before the first round, so a broken model fails here, named by pool.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from orchestrator.config import ExperimentConfig
from orchestrator.engines.weights import check_same_base, check_versions
from orchestrator.errors import SvgapError
from orchestrator.models.source import ModelSource
from orchestrator.roles.facades import InferencePool, SolverPool, TrainerPool, VerifierPool
from orchestrator.roles.group import ActorGroup
from orchestrator.roles.roles import Placed, PlacementPlan
from orchestrator.roles.worker import WorkerSpec


class Pools:
    """The started pools, by role name; the round reaches them through their facades."""

    def __init__(self, plan: PlacementPlan, groups: dict[str, ActorGroup]) -> None:
        self.plan, self.groups = plan, groups
        # a joined role (resources.colocate_verification) is a facade over its host role's actors
        self.facades = {p.name: p.role.facade(groups[p.on or p.name], not p.role.syncs) for p in plan.pools}

    @property
    def solver(self) -> SolverPool:
        return self.facades["generation"]

    @property
    def verifier(self) -> VerifierPool:
        return self.facades["verification"]

    @property
    def trainer(self) -> TrainerPool:
        return self.facades["training"]

    @property
    def judge(self) -> VerifierPool | None:
        return self.facades.get("judge")

    def synced(self) -> list[InferencePool]:
        """The inference pools holding π_t: every published version is loaded into them."""
        return [self.facades[p.name] for p in self.plan.started() if p.role.syncs]

    def publish(self, update_ref: Any, version: int) -> None:
        """Load version `version` (its object-store reference) into every synced pool, and check they hold it."""
        held: dict[str, int] = {}
        for pool in self.synced():
            held.update(pool.load(update_ref))
        check_versions(held, version)

    def faults(self) -> dict[str, int]:
        """Lost actors survived so far, all pools together (roles/calls.py): calls sent again, actors replaced."""
        return {"retried_shards": sum(g.faults.retried for g in self.groups.values()),
                "replaced_actors": sum(g.faults.replaced for g in self.groups.values())}

    def faults_since(self, before: dict[str, int]) -> dict[str, int]:
        """What one round survived: the counts a round record carries."""
        return {k: v - before.get(k, 0) for k, v in self.faults().items()}

    def peak_memory_mb(self) -> dict[str, float]:
        """Peak resident memory of each pool's largest actor so far (MiB): what a role needs per actor."""
        return {f"mem/{name}_peak_mb": max(g.call_all("memory", "peak_rss_mb")) for name, g in self.groups.items()}

    def shutdown(self) -> list[str]:
        """Every group's actors and placement group; returns (and warns about) what could not be released."""
        return [what for g in self.groups.values() for what in g.shutdown()]  # a host shuts its guests down first


def sources(plan: PlacementPlan, cfg: ExperimentConfig, policy: ModelSource) -> dict[str, ModelSource]:
    """The model each role holds: the policy's source, or (a judge) another saved model folder."""
    out = {}
    for p in plan.pools:
        path = p.role.model(cfg)
        if path is not None and not (Path(path).expanduser() / "config.json").is_file():
            raise SvgapError(f"{p.role.key}.path: {path} is not a saved model directory (no config.json)")
        out[p.name] = policy if path is None else replace(policy, path=path)
    return out


def _group(plan: PlacementPlan, p: Placed, cfg: ExperimentConfig, source: ModelSource, cls: type,
           engine_options: dict, where: dict, built: dict[str, ActorGroup]) -> ActorGroup:
    host = built[p.host] if p.host else None
    # threads: a guest uses what its host's bundle reserves, as the host's actor that takes turns on it does
    cpus = plan[p.host].resources.cpus if p.host else p.resources.cpus
    spec = WorkerSpec(p.name, source, cfg.model.device, cfg.model.dtype, cpus, p.resources.threads,
                      cfg.model.engine, engine_options)
    placed = {"pg": where[p.name][0], "bundle_indices": where[p.name][1]} if p.name in where and not host else {}
    return ActorGroup(plan.spec(p.name), cls, spec, *p.role.args(cfg), ranks=p.role.ranked, host=host, **placed)


def start(plan: PlacementPlan, cfg: ExperimentConfig, policy: ModelSource, classes: dict[str, type],
          engine_options: dict, where: dict | None = None) -> Pools:
    """Start every pool of the plan (classes: role -> actor class, the table's unless overridden; where: {role:
    (placement group, bundle indices)} reserved by someone else, e.g. a sweep's Tune trial)."""
    models = sources(plan, cfg, policy)
    built: dict[str, ActorGroup] = {}
    try:
        for p in plan.started():
            cls = classes.get(p.name) or p.role.actor_class()
            built[p.name] = _group(plan, p, cfg, models[p.name], cls, engine_options, where or {}, built)
        for group in built.values():  # block until every actor has built its engine
            group.call_all("start", "version")
        check_same_base({f"{name}[{i}]": fp for name, g in built.items() if plan[name].role.model(cfg) is None
                         for i, fp in enumerate(g.call_all("start", "base_fingerprint"))})
    except BaseException:
        for group in built.values():  # a later pool failed: free the placement groups of the earlier ones
            group.shutdown()
        raise
    return Pools(plan, built)
