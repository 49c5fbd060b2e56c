"""The commit protocol of a run folder, for every kind of state a run keeps: write new -> fsync -> atomically switch
the pointer -> only then delete the old.

    kind                           new state written (stage)             pointer (switch)      old deleted (retire)
    LoRA adapter / full weights    adapters|weights/vNNN.npz             state.json's           weights/v<old>.npz
      (DeepSpeed ranks too: their   (tmp + fsync + rename)               model_version         (full weights only;
      update is rank 0's weights)                                                              adapters are kept)
    scheduler state                inside state.json                     state.json             -
    round files, fit, external     rounds/ picks/ fits/ external/        state.json's           -
                                                                         last_finished_round
    tracking outbox                outbox.json (tmp + fsync + rename)    the file itself        emptied once sent

`state.json` is the one pointer of the run: a resume reads it and trusts nothing else. Everything it names is on disk
(fsynced, folder fsynced) before it is replaced, and nothing it named is deleted before the replacement is durable,
so a driver killed at any instant -- between any two lines here -- leaves a run that resumes from the last committed
round: the new version is an orphan a resume deletes, the old one is still there.
"""
from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Callable

from orchestrator.store.files import atomic_write, replacing

log = logging.getLogger(__name__)

STATE = "state.json"
FULL, ADAPTERS = "weights", "adapters"
_VERSION = re.compile(r"^v(\d+)\.npz$")


def version_path(root: Path, version: int, full: bool) -> Path:
    return Path(root) / (FULL if full else ADAPTERS) / f"v{version:03d}.npz"


def stage(path: Path, write: Callable[[Path], None]) -> Path:
    """Step 1: the new state written beside the old -- `write(tmp)` fills a temporary file that is fsynced and
    renamed over `path`, the folder fsynced -- and nothing deleted. Not yet committed: no pointer names it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with replacing(path, path.with_suffix(".tmp" + path.suffix)) as tmp:  # .tmp.npz: np.savez adds .npz
        write(tmp)
    log.debug(f"staged {path.parent.name}/{path.name}")  # a named instant: the fault suite kills the driver here
    return path


def switch(root: Path, state: dict) -> Path:
    """Step 2: the pointer. state.json replaced atomically and durably (tmp + fsync + rename + folder fsync)."""
    import json

    path = atomic_write(Path(root) / STATE, json.dumps(state))
    log.debug(f"committed round {state.get('last_finished_round')} with model version {state.get('model_version')}")
    return path


def retire(root: Path, keep_version: int) -> list[Path]:
    """Step 3, only after switch: full weights other than the committed version go (one model, not T, is enough to
    resume); adapters are small and every version is kept. Also what a killed round left uncommitted."""
    folder = Path(root) / FULL
    gone = []
    for p in sorted(folder.glob("v*.npz")) if folder.is_dir() else []:
        m = _VERSION.match(p.name)
        if m and int(m.group(1)) != keep_version:
            p.unlink(missing_ok=True)
            gone.append(p)
    return gone


def commit(root: Path, state: dict) -> list[Path]:
    """Steps 2 and 3: switch the pointer to `state`, then retire what it no longer needs."""
    switch(root, state)
    return retire(root, int(state["model_version"]))
