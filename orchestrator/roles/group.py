"""ActorGroup: N identical Ray actors of one role on one placement group.

Learned from OpenRLHF's small actor-group abstraction: the controller never sees individual actor handles; it
calls a method on all actors or maps shards of a list over them. Every `ray.get` has a timeout, and a failure
names the role, the actor and the stage.

A group can be rank-aware (a data-parallel trainer, OpenRLHF's distributed-actor pattern): actor 0 picks a free port
on its node and every actor joins with RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT. A group can also be
hosted on another group's bundles (colocation: roles that never run at the same time share CPUs).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Sequence

import ray
from ray.exceptions import GetTimeoutError
from ray.util.placement_group import placement_group, remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from orchestrator.config import PoolResources
from orchestrator.errors import SvgapError
# StageError and shard are importable from here too (callers and tests did before calls.py)
from orchestrator.roles.calls import Call, CallsMixin, StageError, shard  # noqa: F401

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PoolSpec:
    """Where a role runs: its resources and the placement strategy of its group."""
    role: str
    resources: PoolResources
    placement: str
    timeout_s: float
    retries: int = 3  # lost actors one stage survives (each replaced, its shard sent again) before the run stops

    def bundle(self) -> dict[str, float]:
        b = {"CPU": float(self.resources.cpus)}
        if self.resources.gpus > 0:
            b["GPU"] = float(self.resources.gpus)
        b.update(self.resources.custom)  # e.g. {gen_node: 1}: the bundle lands on a node that advertises it
        return b


class ActorGroup(CallsMixin):
    """Actors of one role, created on a placement group that reserves all their bundles at once."""

    def __init__(self, spec: PoolSpec, actor_cls: type, *init_args: Any, ranks: bool = False,
                 host: "ActorGroup | None" = None, pg: Any = None,
                 bundle_indices: Sequence[int] | None = None, **init_kwargs: Any) -> None:
        """ranks: after start, form a rank group (the actor class implements RankedActor). host: place the actors
        on that group's bundles, asking no resources of their own (actor i on bundle i mod len(host)).
        pg + bundle_indices: place actor i on bundle bundle_indices[i] of a placement group someone
        else reserved (a Tune trial's, orchestrator/studies): the group neither creates nor removes it."""
        self.spec, self.host, self.ranked = spec, host, ranks
        self.owns_pg = pg is None
        # actors that hold processes of their own (a rank group, a vLLM engine) are closed before they are killed
        self.closable = ranks or callable(getattr(actor_cls, "close", None))
        self.guests: list[ActorGroup] = []  # groups hosted on this one's bundles: shut down first
        n = spec.resources.actors
        if pg is not None and host is None:
            if bundle_indices is None or len(bundle_indices) != n:
                raise SvgapError(f"{spec.role} pool: {n} actors need {n} bundle indices, got {bundle_indices}")
            self.pg, self.bundles = pg, list(bundle_indices)
            cpus, gpus = spec.resources.cpus, spec.resources.gpus
        elif host is None:
            self.pg = placement_group([spec.bundle()] * n, strategy=spec.placement, name=f"svgap-{spec.role}")
            try:
                ray.get(self.pg.ready(), timeout=min(spec.timeout_s, 120.0))
            except GetTimeoutError:
                remove_placement_group(self.pg)
                raise SvgapError(f"cannot place the {spec.role} pool ({n} x {spec.bundle()}, {spec.placement}) on "
                                 f"the cluster within the timeout; it has {ray.available_resources()}") from None
            self.bundles = list(range(n))
            cpus, gpus = spec.resources.cpus, spec.resources.gpus
        else:
            self.pg = host.pg
            host.guests.append(self)
            self.bundles = [host.bundles[i % len(host.bundles)] for i in range(n)]
            cpus, gpus = 0, 0  # the host's bundles hold the resources; the two roles take turns on them
        self._remote, self._cpus, self._gpus = ray.remote(actor_cls), cpus, gpus
        self._init_args, self._init_kwargs = init_args, init_kwargs
        self.actors = [self._start_actor(b) for b in self.bundles]
        self._init_calls()
        self._locate()
        if ranks:
            try:
                self._form_rank_group()
            except BaseException:
                self.shutdown()
                raise

    def _form_rank_group(self) -> None:
        """Actor 0 picks MASTER_ADDR/PORT on its node; all actors join at once (joining is a collective)."""
        addr, port = self.call_one("rendezvous", "rank_address")
        nodes = self.nodes()
        envs = [{"RANK": i, "WORLD_SIZE": len(self.actors), "LOCAL_RANK": nodes[:i].count(nodes[i]),
                 "MASTER_ADDR": addr, "MASTER_PORT": port} for i in range(len(self.actors))]
        self._get([self._send(Call(i, "join", (env,), {})) for i, env in enumerate(envs)], "start")

    def __len__(self) -> int:
        return len(self.actors)

    def call_all_kept(self, stage: str, method: str, *args: Any, **kwargs: Any) -> list[tuple[Any, list]]:
        """call_all for a method with several returns: per actor, its first return and references to the others,
        which stay in the object store (new weights never pass through the driver's memory)."""
        calls = [self._send(Call(i, method, args, kwargs)) for i in range(len(self.actors))]
        return list(zip(self._get(calls, stage), [c.kept for c in calls]))

    def nodes(self) -> list[str]:
        """The node id each actor's bundle was placed on (what PACK / SPREAD did on this cluster)."""
        from ray.util.placement_group import placement_group_table

        where = placement_group_table(self.pg).get("bundles_to_node_id", {})
        return [str(where.get(b, "?")) for b in self.bundles]

    def _start_actor(self, bundle: int):
        """One actor of this role on `bundle` of the group's placement group (also a lost actor's replacement)."""
        return self._remote.options(
            num_cpus=self._cpus,
            num_gpus=self._gpus,
            scheduling_strategy=PlacementGroupSchedulingStrategy(self.pg, placement_group_bundle_index=bundle),
            name=None,
        ).remote(*self._init_args, **self._init_kwargs)

    def shutdown(self) -> list[str]:
        """Guests first (their bundles go with this group's placement group); a rank group leaves its process
        group before its actors are killed. Returns what could not be released (each said in a warning): an actor
        or a placement group left behind holds the cluster's CPUs/GPUs until Ray reclaims it."""
        left = [what for g in self.guests for what in g.shutdown()]
        self.guests = []
        if self.closable and self.actors:
            try:
                ray.get([a.close.remote() for a in self.actors], timeout=30)
            except Exception as e:  # noqa: BLE001 - a dead actor cannot close; a live one is killed below anyway
                log.debug(f"{self.spec.role}: close before kill: {type(e).__name__}: {e}")
        for i, a in enumerate(self.actors):
            try:
                ray.kill(a)
            except Exception as e:  # noqa: BLE001 - an actor already gone raises nothing; anything else is news
                left.append(_unreleased(f"{self.spec.role}[{i}] actor", e))
        self.actors = []
        if self.host is None and self.owns_pg:  # else the host group (or a Tune trial) owns the placement group
            try:
                remove_placement_group(self.pg)
            except Exception as e:  # noqa: BLE001 - reported, never raised: the rest of the shutdown goes on
                left.append(_unreleased(f"{self.spec.role} placement group {self.pg.id.hex()[:12]}", e))
        return left


def _unreleased(what: str, e: BaseException) -> str:
    text = f"{what}: {type(e).__name__}: {(str(e).strip().splitlines() or [''])[0][:200]}"
    log.warning(f"shutdown could not release {text}; Ray reclaims it when the driver ends")
    return text


class RankedActor:
    """What an actor of a rank-aware group implements: where rank 0 listens, and joining the group."""

    def rank_address(self) -> tuple[str, int]:
        """This node's address and a port free on it now (rank 0 binds it as MASTER_PORT right after)."""
        import socket

        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("", 0))
            port = s.getsockname()[1]
        return ray.util.get_node_ip_address(), port

    def join(self, env: dict) -> object:
        raise NotImplementedError

    def close(self) -> object:
        """Leave the rank group (called on every rank before the actors are killed)."""
        raise NotImplementedError
