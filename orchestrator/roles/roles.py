"""The role table and the placement plan: every pool a run starts, as data.

Learned from verl's `role_worker_mapping` + `ResourcePoolManager`: one entry per role says which actor class runs
it, where the config keeps its resources, which model it holds and whether it follows the policy's versions; one
plan built from the config says which roles start, what each bundle asks Ray for and which role shares another's
bundles. The capacity check (ray_session), the pools (roles/pools.py), a sweep trial's bundles (studies/placement)
and the placement report all read this one plan. Adding a role is one entry here plus its facade (roles/facades.py).
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable

from orchestrator.config import ExperimentConfig, PoolResources, ResourcesConfig
from orchestrator.errors import SvgapError
from orchestrator.roles.facades import SolverPool, TrainerPool, VerifierPool
from orchestrator.roles.group import PoolSpec


def _always(cfg: ExperimentConfig) -> bool:
    return True


def _policy(cfg: ExperimentConfig) -> str | None:
    return None  # the policy π_t (model.path, or the workload's base model)


def _none(cfg: ExperimentConfig) -> tuple:
    return ()


@dataclass(frozen=True)
class Role:
    """One pool: its actor class ("module:Class", imported when the pool starts), its config key and resources,
    the model it holds (None: the policy) and whether it loads every new policy version."""
    name: str
    actor: str
    key: str  # where its resources sit in the config: error messages name it
    resources: Callable[[ExperimentConfig], PoolResources]
    enabled: Callable[[ExperimentConfig], bool] = _always
    model: Callable[[ExperimentConfig], str | None] = _policy
    args: Callable[[ExperimentConfig], tuple] = _none  # actor init arguments after its WorkerSpec
    syncs: bool = True  # an inference pool holding π_t: every published version is loaded into it
    ranked: bool = False  # a rank group (a data-parallel trainer)
    shares: str | None = None  # may run on that role's bundles (resources.colocate_training)
    joins: str | None = None  # may run on that role's very actors, one model copy (resources.colocate_verification)
    facade: type = VerifierPool  # what a round may ask of it (roles/facades.py)

    def actor_class(self) -> type:
        module, _, name = self.actor.partition(":")
        return getattr(importlib.import_module(module), name)


ROLES: tuple[Role, ...] = (
    Role("generation", "orchestrator.roles.generation:GenerationWorker", "resources.generation",
         lambda cfg: cfg.resources.generation, facade=SolverPool),
    Role("verification", "orchestrator.roles.verification:VerificationWorker", "resources.verification",
         lambda cfg: cfg.resources.verification, joins="generation"),
    Role("training", "orchestrator.roles.training:TrainingWorker", "resources.training",
         lambda cfg: cfg.resources.training, args=lambda cfg: (cfg.training, cfg.seed), syncs=False, ranked=True,
         shares="generation", facade=TrainerPool),
    # a separate verifier model (config/roles.py): scores the candidates with its own fixed weights
    Role("judge", "orchestrator.roles.verification:VerificationWorker", "judge", lambda cfg: cfg.judge,
         enabled=lambda cfg: cfg.judge is not None, model=lambda cfg: cfg.judge.path, syncs=False),
)
BY_NAME = {r.name: r for r in ROLES}


@dataclass(frozen=True)
class Placed:
    """A role in the plan: its resources and, when it shares another role's bundles, that role's name; `on`: the
    role whose actors do this role's work (no pool of its own)."""
    role: Role
    resources: PoolResources
    host: str | None = None
    on: str | None = None

    @property
    def name(self) -> str:
        return self.role.name


def _fits(want: dict[str, float], have: dict[str, float]) -> bool:
    return all(want[k] <= have.get(k, 0.0) + 1e-9 for k in ("CPU", "GPU"))


def _asks(pools: list[Placed]) -> dict[str, float]:
    own = [p.resources for p in pools if p.host is None and p.on is None]
    return {"CPU": sum(r.actors * r.cpus for r in own), "GPU": sum(r.actors * r.gpus for r in own)}


def _as_config(cfg: ExperimentConfig | ResourcesConfig) -> ExperimentConfig:
    # resources alone: the other sections' defaults, unvalidated (their cross-section checks judge a whole config)
    return cfg if isinstance(cfg, ExperimentConfig) else ExperimentConfig.model_construct(resources=cfg)


@dataclass(frozen=True)
class PlacementPlan:
    """Which pools start, in table order, and which share another's bundles."""
    pools: tuple[Placed, ...]
    strategy: str
    timeout_s: float
    retries: int

    @classmethod
    def build(cls, cfg: ExperimentConfig | ResourcesConfig, have: dict[str, float] | None = None,
              shared: bool | None = None) -> "PlacementPlan":
        """The plan for `cfg` on a cluster with `have` resources (None: ask Ray). `shared` overrides the
        colocation decision (a sweep trial that reserved no training bundles)."""
        cfg = _as_config(cfg)
        r = cfg.resources
        own = [Placed(role, role.resources(cfg)) for role in ROLES if role.enabled(cfg)]
        if shared is None:
            shared = _shares(own, r.colocate_training, have)
        joined = r.colocate_verification
        pools = tuple(Placed(p.role, p.resources, p.role.shares if shared and p.role.shares else None,
                             p.role.joins if joined and p.role.joins else None) for p in own)
        return cls(pools, r.placement, r.timeout_s, r.retries)

    def __getitem__(self, name: str) -> Placed:
        return next(p for p in self.pools if p.name == name)

    def names(self) -> list[str]:
        return [p.name for p in self.pools]

    def started(self) -> list[Placed]:
        """The pools that start actors of their own (a joined role's work goes to its host role's actors)."""
        return [p for p in self.pools if p.on is None]

    def shared(self, name: str) -> bool:
        return any(p.name == name and p.host is not None for p in self.pools)

    def requested(self) -> dict[str, float]:
        """Total CPU/GPU the pools ask for; a pool on another's bundles asks nothing of its own."""
        return _asks(list(self.pools))

    def spec(self, name: str) -> PoolSpec:
        return PoolSpec(name, self[name].resources, self.strategy, self.timeout_s, self.retries)

    def check(self, have: dict[str, float]) -> None:
        """Fail fast when the pools ask for more than the cluster has (a placement group would wait forever)."""
        want = self.requested()
        own = [p for p in self.started() if p.host is None]
        for kind in ("CPU", "GPU"):
            if want[kind] > have.get(kind, 0.0) + 1e-9:
                parts = ", ".join(f"{p.name} {p.resources.actors}x{getattr(p.resources, kind.lower() + 's'):g}"
                                  for p in own)
                shared = "".join(f" ({p.name} shares the {p.host} pool's bundles)" for p in self.started() if p.host)
                raise SvgapError(f"resources: the pools ask for {want[kind]:g} {kind} ({parts}){shared} but the "
                                 f"cluster has {have.get(kind, 0.0):g}")
        for p in own:
            _check_custom(p, have)


def _shares(own: list[Placed], mode: str, have: dict[str, float] | None) -> bool:
    """Whether the roles that may share another's bundles (training on generation's) do.

    A round never trains while it generates or verifies, so sharing is honest on a small machine: `auto` shares
    only when separate pools would not fit but the shared ones do, never shares GPUs (an actor given no GPU of its
    own would see none) and puts one guest actor per host bundle at most."""
    if mode != "auto":
        return mode == "always"
    import ray

    have = ray.cluster_resources() if have is None else have
    by = {p.name: p for p in own}
    guests = [p for p in own if p.role.shares and p.role.shares in by]
    if not guests or _fits(_asks(own), have):
        return False
    if any(g.resources.gpus > 0 or g.resources.actors > by[g.role.shares].resources.actors for g in guests):
        return False
    return _fits(_asks([Placed(p.role, p.resources, p.role.shares if p in guests else None) for p in own]), have)


def _check_custom(p: Placed, have: dict[str, float]) -> None:
    """Custom resources (resources.<role>.custom) no node of the cluster advertises would leave the pool unplaced."""
    for name, amount in p.resources.custom.items():
        total = amount * p.resources.actors
        if total > have.get(name, 0.0) + 1e-9:
            known = sorted(k for k in have if k not in ("CPU", "GPU", "memory", "object_store_memory")
                           and not k.startswith("node:") and not k.startswith("accelerator_type:"))
            raise SvgapError(f"{p.role.key}.custom.{name}: the pool asks for {total:g} ({p.resources.actors}x"
                             f"{amount:g}) but the cluster has {have.get(name, 0.0):g}; its custom resources: "
                             f"{', '.join(known) or 'none'}")
