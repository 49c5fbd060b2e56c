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
    if address is None:
        ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False)
        return True
    try:
        ray.init(address=address, log_to_driver=False, configure_logging=False)
    except (ConnectionError, RuntimeError, ValueError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise SvgapError(f"cannot join Ray cluster at {address}: {first}") from None
    return False


def requested(resources: ResourcesConfig) -> dict[str, float]:
    """Total CPU/GPU the three pools ask for."""
    pools = [resources.generation, resources.verification, resources.training]
    return {"CPU": sum(p.actors * p.cpus for p in pools), "GPU": sum(p.actors * p.gpus for p in pools)}


def check_capacity(resources: ResourcesConfig) -> None:
    """Fail fast when the config asks for more than the cluster has (a placement group would wait forever)."""
    import ray

    have = ray.cluster_resources()
    want = requested(resources)
    for kind in ("CPU", "GPU"):
        if want[kind] > have.get(kind, 0.0) + 1e-9:
            parts = ", ".join(f"{role} {p.actors}x{getattr(p, kind.lower() + 's'):g}" for role, p in
                              (("generation", resources.generation), ("verification", resources.verification),
                               ("training", resources.training)))
            raise SvgapError(f"resources: the pools ask for {want[kind]:g} {kind} ({parts}) but the cluster has "
                             f"{have.get(kind, 0.0):g}")


def shutdown(started: bool) -> None:
    import ray

    if started and ray.is_initialized():
        ray.shutdown()
