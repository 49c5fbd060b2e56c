"""Joining or starting Ray, and checking the cluster can hold the pools -- before any round starts."""
from __future__ import annotations

import socket

from orchestrator.config import ExperimentConfig, ResourcesConfig
from orchestrator.errors import SvgapError
from orchestrator.roles.roles import PlacementPlan


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


def training_colocates(cfg: ExperimentConfig | ResourcesConfig, have: dict[str, float] | None = None) -> bool:
    """Whether the training actors share the generation pool's bundles (resources.colocate_training; the rule is
    the placement plan's, roles/roles.py)."""
    return PlacementPlan.build(cfg, have).shared("training")


def check_capacity(cfg: ExperimentConfig | ResourcesConfig) -> bool:
    """Fail fast when the config asks for more than the cluster has (a placement group would wait forever).
    Returns whether the training pool will share the generation pool's bundles."""
    import ray

    have = ray.cluster_resources()
    plan = PlacementPlan.build(cfg, have)
    plan.check(have)
    return plan.shared("training")


def shutdown(started: bool) -> None:
    import ray

    if started and ray.is_initialized():
        ray.shutdown()
