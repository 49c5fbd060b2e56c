"""π_{t+1} by reference: the run folder's copy of a model version is written and read by tasks on the driver's
node (roles/local_tasks.py), so the weights go between the object store and the disk without passing through the
driver's memory; the driver holds only the reference it hands to the pools."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from orchestrator.engines.weights import save_update
from orchestrator.errors import SvgapError
from orchestrator.roles.local_tasks import on_driver_node
from orchestrator.run.resume import load_update

log = logging.getLogger(__name__)


def _version(update) -> int:
    return update.version


def _done(ref: Any, timeout_s: float, what: str) -> Any:
    """The task's (small) result; one line naming `what` when it failed."""
    import ray
    from ray.exceptions import GetTimeoutError, RayTaskError

    try:
        return ray.get(ref, timeout=timeout_s)
    except GetTimeoutError:
        raise SvgapError(f"{what} took over {timeout_s:g}s") from None
    except RayTaskError as e:
        cause = getattr(e, "cause", None)
        if isinstance(cause, SvgapError):
            raise SvgapError(str(cause)) from None
        first = (str(cause or e).strip().splitlines() or [""])[0]
        raise SvgapError(f"{what}: {type(cause or e).__name__}: {first}") from None


def save(root: Path, update_ref: Any, timeout_s: float) -> Path:
    """adapters/vNNN.npz or weights/vNNN.npz staged (written and fsynced beside the committed version: the commit
    protocol's first step, store/commit.py) on the driver's node."""
    path = _done(on_driver_node(save_update, Path(root), update_ref), timeout_s,
                 f"cannot save the model version into {root}")
    log.debug(f"staged {path.parent.name}/{path.name}")  # the driver's instant: the fault suite kills it here
    return path


def load(path: Path, version: int, timeout_s: float) -> Any:
    """The saved π_version read into the object store; returns its reference once it is known to be that
    version (a broken file fails here, one line, not in the first actor that loads it)."""
    ref = on_driver_node(load_update, Path(path))
    held = _done(on_driver_node(_version, ref), timeout_s, f"cannot read the saved model version {path}")
    if held != version:
        raise SvgapError(f"the saved model version {path} holds version {held}, expected {version}")
    return ref
