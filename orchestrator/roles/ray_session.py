"""Joining or starting Ray, and checking the cluster can hold the pools -- before any round starts."""
from __future__ import annotations

import socket

from orchestrator.config import ResourcesConfig
from orchestrator.errors import SvgapError


def _probe(address: str) -> None:
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise SvgapError(f"--address {address!r}: expected auto or HOST:PORT (e.g. 10.0.0.5:6379)")
    try:
        with socket.create_connection((host, int(port)), timeout=5):
            pass
    except OSError as e:
        raise SvgapError(f"Ray cluster at {address} unreachable: {e.strerror or e}") from None


def connect(address: str | None) -> bool:
    """Start Ray in-process (address None) or join a cluster; returns True when we started it."""
    import ray

    if address is not None and address != "auto":
        _probe(address.removeprefix("ray://"))
    if ray.is_initialized():  # e.g. an allocation study or a test already holds a session
        return False
    if address is None:  # "local": start our own, even when another Ray runs on this machine (plain init joins it)
        ray.init(address="local", include_dashboard=False, log_to_driver=False, configure_logging=False)
        return True
    try:
        ray.init(address=address, log_to_driver=False, configure_logging=False)
    except (ConnectionError, RuntimeError, ValueError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise SvgapError(f"cannot join Ray cluster at {address}: {first}") from None
    return False


def requested(resources: ResourcesConfig, colocate: bool = False) -> dict[str, float]:
    """Total CPU/GPU the pools ask for; a colocated training pool asks nothing of its own (it runs on the
    generation pool's bundles, between the rounds' inference stages)."""
    pools = [resources.generation, resources.verification] + ([] if colocate else [resources.training])
    return {"CPU": sum(p.actors * p.cpus for p in pools), "GPU": sum(p.actors * p.gpus for p in pools)}


def _fits(want: dict[str, float], have: dict[str, float]) -> bool:
    return all(want[k] <= have.get(k, 0.0) + 1e-9 for k in ("CPU", "GPU"))


def training_colocates(resources: ResourcesConfig, have: dict[str, float] | None = None) -> bool:
    """Whether the training actors share the generation pool's bundles (resources.colocate_training).

    A round never trains while it generates or verifies, so sharing is honest on a small machine: `auto` shares
    only when a separate training pool would not fit but the inference pools do, and never shares GPUs (a
    training actor given no GPU of its own would see none)."""
    import ray

    mode = resources.colocate_training
    if mode != "auto":
        return mode == "always"
    have = ray.cluster_resources() if have is None else have
    if resources.training.gpus > 0 or _fits(requested(resources), have) or \
            resources.training.actors > resources.generation.actors:  # one training rank per shared bundle at most
        return False
    return _fits(requested(resources, colocate=True), have)


def check_capacity(resources: ResourcesConfig) -> bool:
    """Fail fast when the config asks for more than the cluster has (a placement group would wait forever).
    Returns whether the training pool will share the generation pool's bundles."""
    import ray

    have = ray.cluster_resources()
    colocate = training_colocates(resources, have)
    want = requested(resources, colocate)
    roles = (("generation", resources.generation), ("verification", resources.verification)) + \
        (() if colocate else (("training", resources.training),))
    for kind in ("CPU", "GPU"):
        if want[kind] > have.get(kind, 0.0) + 1e-9:
            parts = ", ".join(f"{role} {p.actors}x{getattr(p, kind.lower() + 's'):g}" for role, p in roles)
            shared = " (training shares the generation pool's bundles)" if colocate else ""
            raise SvgapError(f"resources: the pools ask for {want[kind]:g} {kind} ({parts}){shared} but the "
                             f"cluster has {have.get(kind, 0.0):g}")
    check_custom(roles, have)
    return colocate


def check_custom(roles, have: dict[str, float]) -> None:
    """Custom resources (resources.<role>.custom) no node of the cluster advertises would leave the pool unplaced."""
    for role, p in roles:
        for name, amount in p.custom.items():
            if amount * p.actors > have.get(name, 0.0) + 1e-9:
                known = sorted(k for k in have if k not in ("CPU", "GPU", "memory", "object_store_memory")
                               and not k.startswith("node:") and not k.startswith("accelerator_type:"))
                raise SvgapError(f"resources.{role}.custom.{name}: the pool asks for {amount * p.actors:g} "
                                 f"({p.actors}x{amount:g}) but the cluster has {have.get(name, 0.0):g}; its custom "
                                 f"resources: {', '.join(known) or 'none'}")


def shutdown(started: bool) -> None:
    import ray

    if started and ray.is_initialized():
        ray.shutdown()
