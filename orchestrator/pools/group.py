"""ActorGroup: N identical Ray actors of one role on one placement group.

Learned from OpenRLHF's small actor-group abstraction: the controller never sees individual actor handles; it
calls a method on all actors or maps shards of a list over them. Every `ray.get` has a timeout, and a failure
names the role, the actor and the stage.

A group can be rank-aware (a data-parallel trainer, OpenRLHF's distributed-actor pattern): actor 0 picks a free port
on its node and every actor joins with RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT. A group can also be
hosted on another group's bundles (colocation: roles that never run at the same time share CPUs).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Sequence

import ray
from ray.exceptions import GetTimeoutError, RayActorError, RayTaskError
from ray.util.placement_group import placement_group, remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from orchestrator.config import PoolResources
from orchestrator.errors import SvgapError


class StageError(SvgapError):
    """A stage failed on one actor; the message names role, actor index and stage."""


@dataclass(frozen=True)
class PoolSpec:
    """Where a role runs: its resources and the placement strategy of its group."""
    role: str
    resources: PoolResources
    placement: str
    timeout_s: float

    def bundle(self) -> dict[str, float]:
        b = {"CPU": float(self.resources.cpus)}
        if self.resources.gpus > 0:
            b["GPU"] = float(self.resources.gpus)
        return b


def shard(items: Sequence[Any], parts: int) -> list[tuple[int, int]]:
    """Contiguous [start, end) ranges splitting len(items) into `parts` near-equal shards (empty ones dropped)."""
    n = len(items)
    size = math.ceil(n / parts) if n else 0
    return [(s, min(s + size, n)) for s in range(0, n, size)] if size else []


def _cause(err: BaseException) -> str:
    if isinstance(err, RayTaskError):
        inner = err.cause if getattr(err, "cause", None) is not None else err
        text = str(inner).strip().splitlines()
        return f"{type(inner).__name__}: {text[-1] if text else ''}"
    return f"{type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''}"


class ActorGroup:
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
        remote_cls = ray.remote(actor_cls)
        self.actors = [
            remote_cls.options(
                num_cpus=cpus,
                num_gpus=gpus,
                scheduling_strategy=PlacementGroupSchedulingStrategy(self.pg, placement_group_bundle_index=b),
                name=None,
            ).remote(*init_args, **init_kwargs)
            for b in self.bundles
        ]
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
        self._get([a.join.remote(env) for a, env in zip(self.actors, envs)], "start")

    def __len__(self) -> int:
        return len(self.actors)

    def nodes(self) -> list[str]:
        """The node id each actor's bundle was placed on (what PACK / SPREAD did on this cluster)."""
        from ray.util.placement_group import placement_group_table

        where = placement_group_table(self.pg).get("bundles_to_node_id", {})
        return [str(where.get(b, "?")) for b in self.bundles]

    def _get(self, refs: list, stage: str) -> list:
        """One deadline for the whole stage (not timeout_s per actor in turn)."""
        out = []
        deadline = time.monotonic() + self.spec.timeout_s
        for i, ref in enumerate(refs):
            try:
                out.append(ray.get(ref, timeout=max(0.0, deadline - time.monotonic())))
            except GetTimeoutError:
                raise StageError(f"stage '{stage}' timed out after {self.spec.timeout_s:g}s on "
                                 f"{self.spec.role}[{i}]") from None
            except (RayTaskError, RayActorError) as e:
                raise StageError(f"stage '{stage}' failed on {self.spec.role}[{i}]: {_cause(e)}") from None
        return out

    def call_all(self, stage: str, method: str, *args: Any, **kwargs: Any) -> list:
        """The same call on every actor (e.g. load new weights); returns one result per actor."""
        return self._get([getattr(a, method).remote(*args, **kwargs) for a in self.actors], stage)

    def call_one(self, stage: str, method: str, *args: Any, **kwargs: Any) -> Any:
        return self._get([getattr(self.actors[0], method).remote(*args, **kwargs)], stage)[0]

    def submit_shards(self, method: str, items: Sequence[Any], *args: Any, **kwargs: Any) -> list:
        """Start `method(items[shard], *args)` on each actor; returns the pending refs (see `gather`)."""
        ranges = shard(items, len(self.actors))
        return [getattr(self.actors[i], method).remote(list(items[s:e]), *args, **kwargs)
                for i, (s, e) in enumerate(ranges)]

    def gather(self, stage: str, refs: list) -> list:
        """Concatenate the shard results of `submit_shards`, in item order."""
        out: list = []
        for part in self._get(refs, stage):
            out.extend(part)
        return out

    def map_shards(self, stage: str, method: str, items: Sequence[Any], *args: Any, **kwargs: Any) -> list:
        return self.gather(stage, self.submit_shards(method, items, *args, **kwargs))

    def shutdown(self) -> None:
        """Guests first (their bundles go with this group's placement group); a rank group leaves its process
        group before its actors are killed."""
        for g in self.guests:
            g.shutdown()
        self.guests = []
        if self.closable and self.actors:
            try:
                ray.get([a.close.remote() for a in self.actors], timeout=30)
            except Exception:
                pass
        for a in self.actors:
            try:
                ray.kill(a)
            except Exception:
                pass
        self.actors = []
        if self.host is not None or not self.owns_pg:
            return  # the host group (or whoever reserved it, e.g. a Tune trial) owns the placement group
        try:
            remove_placement_group(self.pg)
        except Exception:
            pass


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
