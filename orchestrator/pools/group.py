"""ActorGroup: N identical Ray actors of one role on one placement group.

Learned from OpenRLHF's small actor-group abstraction: the controller never sees individual actor handles; it
calls a method on all actors or maps shards of a list over them. Every `ray.get` has a timeout, and a failure
names the role, the actor and the stage.
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

    def __init__(self, spec: PoolSpec, actor_cls: type, *init_args: Any, **init_kwargs: Any) -> None:
        self.spec = spec
        n = spec.resources.actors
        self.pg = placement_group([spec.bundle()] * n, strategy=spec.placement, name=f"svgap-{spec.role}")
        try:
            ray.get(self.pg.ready(), timeout=min(spec.timeout_s, 120.0))
        except GetTimeoutError:
            remove_placement_group(self.pg)
            raise SvgapError(f"cannot place the {spec.role} pool ({n} x {spec.bundle()}, {spec.placement}) on "
                             f"the cluster within the timeout; it has {ray.available_resources()}") from None
        remote_cls = ray.remote(actor_cls)
        self.actors = [
            remote_cls.options(
                num_cpus=spec.resources.cpus,
                num_gpus=spec.resources.gpus,
                scheduling_strategy=PlacementGroupSchedulingStrategy(self.pg, placement_group_bundle_index=i),
                name=None,
            ).remote(*init_args, **init_kwargs)
            for i in range(n)
        ]

    def __len__(self) -> int:
        return len(self.actors)

    def nodes(self) -> list[str]:
        """The node id each actor's bundle was placed on (what PACK / SPREAD did on this cluster)."""
        from ray.util.placement_group import placement_group_table

        where = placement_group_table(self.pg).get("bundles_to_node_id", {})
        return [str(where.get(i, "?")) for i in range(len(self.actors))]

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
        for a in self.actors:
            try:
                ray.kill(a)
            except Exception:
                pass
        try:
            remove_placement_group(self.pg)
        except Exception:
            pass
