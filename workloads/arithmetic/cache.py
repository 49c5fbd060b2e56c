"""On-disk cache of built base models: `<cache_dir>/models/<name>-<recipe hash>/`.

A build happens in a temporary sibling directory and is renamed into place only when complete (the recipe file
is written last), so an interrupted build never leaves a half-written model at the final path. A file lock
per recipe keeps concurrent builders (test workers, Ray actors) from building the same model twice; a waiter gives
up after $SVGAP_CACHE_LOCK_TIMEOUT_S naming the holder (pid, host), and at once when that holder is gone.

Trust: an entry is world-readable (so a cache can be shared read-only) but never writable by others, and its
recipe file records a SHA-256 of every other file. A load checks both: a directory that merely holds the two
expected files -- planted or edited by another user, or corrupted -- is refused with a line naming it. An entry
built before checksums were recorded is rebuilt.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from orchestrator.errors import SvgapError
from orchestrator.store.lock import wait_lock
from orchestrator.store.trust import untrusted

log = logging.getLogger(__name__)

RECIPE_FILE = "svgap-recipe.json"


def recipe_hash(recipe: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:12]


def is_complete(path: Path) -> bool:
    return (path / RECIPE_FILE).is_file() and (path / "config.json").is_file()


def content_digest(path: Path) -> str:
    """SHA-256 over every file of a model directory except the recipe file (names and bytes), in name order."""
    h = hashlib.sha256()
    for f in sorted(p for p in Path(path).rglob("*") if p.name != RECIPE_FILE and not p.is_dir()):
        h.update(f.relative_to(path).as_posix().encode() + b"\0")
        fh = hashlib.sha256()
        with open(f, "rb") as src:
            for chunk in iter(lambda: src.read(1 << 20), b""):
                fh.update(chunk)
        h.update(fh.digest())
    return h.hexdigest()


class Untrusted(SvgapError):
    """A cache entry that must not be loaded (foreign owner, writable by others, checksum mismatch)."""


def problem(path: Path) -> str | None:
    """Why the complete entry at `path` cannot be loaded as is, or None. 'no checksum' means an old entry."""
    why = untrusted(path)
    if why:
        return why
    try:
        recorded = json.loads((path / RECIPE_FILE).read_text()).get("sha256")
    except (OSError, ValueError, AttributeError):
        return f"{path / RECIPE_FILE} is unreadable"
    if not recorded:
        return "no checksum"
    if content_digest(path) != recorded:
        return "its files do not match the SHA-256 recorded when it was built"
    return None


def _share_read_only(path: Path) -> None:
    """World-readable, writable only by the owner (mkdtemp makes the dir private; some savers make files 0600)."""
    os.chmod(path, 0o755)
    for p in path.rglob("*"):
        os.chmod(p, 0o755 if p.is_dir() else 0o644)


def _models_root(cache_dir: str | Path) -> Path:
    root = Path(cache_dir).expanduser() / "models"
    try:
        root.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=root, prefix=".probe-"):
            pass
    except OSError as e:
        raise SvgapError(f"cache dir {Path(cache_dir).expanduser()} is not writable "
                         f"({e.strerror or type(e).__name__}); set model.cache_dir to a writable directory") from None
    return root


def _refuse(final: Path, why: str) -> Untrusted:
    return Untrusted(f"base model cache entry {final} refused: {why}; delete it to rebuild, or set "
                     f"model.cache_dir to a folder only you can write (or model.path to a model you trust)")


def lock_timeout_s() -> float:
    """How long a process waits for another one building the same model ($SVGAP_CACHE_LOCK_TIMEOUT_S, default 30
    minutes: a build takes a few minutes on 2 CPU cores)."""
    raw = os.environ.get("SVGAP_CACHE_LOCK_TIMEOUT_S", "1800")
    try:
        return float(raw)
    except ValueError:
        raise SvgapError(f"SVGAP_CACHE_LOCK_TIMEOUT_S={raw!r}: expected a number of seconds") from None


def cached_build(cache_dir: str | Path, name: str, recipe: dict[str, Any],
                 build: Callable[[Path], dict[str, Any]]) -> Path:
    """Path of the model for `recipe`, building it with `build(tmp_dir) -> build info` when not cached yet."""
    key = f"{name}-{recipe_hash(recipe)}"
    final = Path(cache_dir).expanduser() / "models" / key
    if is_complete(final) and problem(final) is None:
        log.info(f"base model: cached {final} (checksum verified)")
        return final
    root = _models_root(cache_dir)
    lock = wait_lock(root / f".{key}.lock", lock_timeout_s(), f"base model {key}")  # another process may build it
    try:
        why = problem(final) if is_complete(final) else "incomplete"
        if why is None:  # another process built it while we waited
            log.info(f"base model: cached {final} (checksum verified)")
            return final
        if why not in ("incomplete", "no checksum"):
            raise _refuse(final, why)
        _build_entry(root, final, recipe, build, why)
    finally:
        lock.release()
    log.info(f"base model: saved {final}")
    return final


def _build_entry(root: Path, final: Path, recipe: dict[str, Any], build: Callable[[Path], dict[str, Any]],
                 why: str) -> None:
    """Build into a temporary sibling and rename it into place (the caller holds the entry's lock)."""
    key = final.name
    for stale in [*root.glob(f".{key}.tmp-*"), *root.glob(f".{key}.old-*")]:  # left by a killed build
        shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{key}.tmp-", dir=root))
    try:
        reason = "built before checksums were recorded" if why == "no checksum" else f"not in cache {root}"
        log.info(f"base model: building {key} ({reason})")
        info = build(tmp)
        (tmp / RECIPE_FILE).write_text(json.dumps({"name": key, "recipe": recipe, "build": info,
                                                   "sha256": content_digest(tmp)}, indent=2))
        _share_read_only(tmp)
        if final.exists():  # an old or incomplete entry: move it aside atomically, so no reader sees half of it
            old = Path(tempfile.mkdtemp(prefix=f".{key}.old-", dir=root))
            os.replace(final, old / "entry")
            shutil.rmtree(old, ignore_errors=True)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def build_info(path: Path) -> dict[str, Any]:
    """What the builder recorded (steps, seconds, dev accuracy, ...); {} for models not built here."""
    try:
        return json.loads((Path(path) / RECIPE_FILE).read_text()).get("build", {})
    except (OSError, ValueError):
        return {}
