"""`resources`: each role's pool of Ray actors and how the pools are placed.

A role's pool is a `PoolResources`; a new role's pool is one more field of that type in `ResourcesConfig`
(its default the pool's own, e.g. `PoolResources(actors=1, cpus=0.5)`).
"""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from orchestrator.config.errors import bad
from orchestrator.config.fields import Num, Range, Section

RAY_BUILTIN = ("CPU", "GPU", "memory", "object_store_memory")


class PoolResources(Section):
    """One role's actors: how many and what each asks Ray for (fractions allowed).

    `threads` (torch intra-op threads per actor) defaults to the whole CPUs reserved, at least 1: on CPU,
    oversubscribed torch threads spin against each other and run tens of times slower (measured here: a
    forward pass went from 14 ms with 1 thread to 950 ms with 2 threads beside one busy process)."""
    actors: Annotated[int, Range(1)] = Field(1, description="actors of the role (training: ranks)")
    cpus: Annotated[Num, Range(0.0)] = Field(1.0, description="CPUs per actor")
    gpus: Annotated[Num, Range(0.0)] = Field(0.0, description="GPUs per actor")
    threads: Annotated[int | None, Range(1)] = Field(None, description="torch threads per actor (null: the whole "
                                                                       "CPUs reserved, at least 1)")
    custom: dict = Field(default_factory=dict, description="custom Ray resources each actor asks for, e.g. "
                         "{gen_node: 1}: lands the role on the nodes that advertise them (cluster/ray-cluster.yaml, "
                         "cluster/local.sh, KubeRay rayStartParams.resources)")

    @model_validator(mode="after")
    def _placeable(self) -> "PoolResources":
        if self.cpus + self.gpus <= 0:
            raise bad("cpus and gpus are both 0; each actor needs some CPU or GPU to be placed")
        for name, amount in self.custom.items():
            if not isinstance(name, str) or not name or name in RAY_BUILTIN:
                raise bad("not a custom resource name (CPU and GPU are set by cpus / gpus)", f"custom.{name}")
            if isinstance(amount, bool) or not isinstance(amount, (int, float)) or amount <= 0:
                raise bad(f"expected a number > 0, got {amount!r}", f"custom.{name}")
        self.custom = {k: float(v) for k, v in self.custom.items()}
        return self


class ResourcesConfig(Section):
    """The pools of the generation, verification and training roles and how Ray places them."""
    generation: PoolResources = Field(default_factory=lambda: PoolResources(actors=2, cpus=0.5))
    verification: PoolResources = Field(default_factory=lambda: PoolResources(actors=1, cpus=0.5))
    training: PoolResources = Field(default_factory=lambda: PoolResources(actors=1, cpus=0.5))
    placement: Literal["PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"] = Field(
        "PACK", description="Ray placement-group strategy of the pools' bundles")
    timeout_s: Annotated[Num, Range(0.0, lo_open=True)] = Field(600.0, description="longest a stage may take")
    retries: Annotated[int, Range(0)] = Field(
        3, description="a stage that loses an actor (OOM, node gone) replaces it and sends its shard again, up to "
                       "this many times per stage; one more loss stops the run naming the role, actor, node and "
                       "cause (roles/calls.py)")
    colocate_training: Literal["auto", "never", "always"] = Field(
        "auto", description="training never runs while generation/verification do, so on a cluster too small for "
                            "its own CPUs the training actors may share the generation pool's bundles. auto: only "
                            "when the separate pool would not fit; never: always its own bundles; always: always share")
    colocate_verification: bool = Field(
        False, description="verification on the generation actors themselves (one model copy, no transfer): no "
                           "verification pool is started and resources.verification is not used; give its CPUs to "
                           "the generation pool (e.g. 2 actors x 1 CPU on 2 cores)")

    @model_validator(mode="after")
    def _colocation(self) -> "ResourcesConfig":
        if self.colocate_training == "always" and self.training.gpus > 0:
            raise bad("always shares CPU bundles only; with resources.training.gpus > 0 give training its own "
                      "bundles (never/auto)", "colocate_training")
        if self.colocate_training == "always" and self.training.actors > self.generation.actors:
            raise bad(f"always puts one training actor on each generation bundle at most; {self.training.actors} "
                      f"training actors > {self.generation.actors} generation actors", "colocate_training")
        return self
