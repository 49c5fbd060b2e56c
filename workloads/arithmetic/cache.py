"""On-disk cache of built base models: `<cache_dir>/models/<name>-<recipe hash>/`.

A build happens in a temporary sibling directory and is renamed into place only when complete (the recipe file
is written last), so an interrupted build never leaves a half-written model at the final path. A file lock
per recipe keeps concurrent builders (test workers, Ray actors) from building the same model twice.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from orchestrator.errors import SvgapError

RECIPE_FILE = "svgap-recipe.json"


def recipe_hash(recipe: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:12]


def is_complete(path: Path) -> bool:
    return (path / RECIPE_FILE).is_file() and (path / "config.json").is_file()


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


@contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    with open(lock_path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def cached_build(cache_dir: str | Path, name: str, recipe: dict[str, Any],
                 build: Callable[[Path], dict[str, Any]], progress: Callable[[str], None] | None = None) -> Path:
    """Path of the model for `recipe`, building it with `build(tmp_dir) -> build info` when not cached yet."""
    say = progress or (lambda _m: None)
    key = f"{name}-{recipe_hash(recipe)}"
    final = Path(cache_dir).expanduser() / "models" / key
    if is_complete(final):
        say(f"base model: cached {final}")
        return final
    root = _models_root(cache_dir)
    with _locked(root / f".{key}.lock"):
        if is_complete(final):  # another process built it while we waited
            say(f"base model: cached {final}")
            return final
        for stale in root.glob(f".{key}.tmp-*"):  # left by a killed build; we hold the lock, so nobody owns it
            shutil.rmtree(stale, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}.tmp-", dir=root))
        try:
            say(f"base model: building {key} (not in cache {root})")
            info = build(tmp)
            (tmp / RECIPE_FILE).write_text(json.dumps({"name": key, "recipe": recipe, "build": info}, indent=2))
            os.chmod(tmp, 0o755)  # mkdtemp makes it private; the cache is shared like any directory
            if final.exists():  # incomplete leftover from outside this module
                shutil.rmtree(final)
            os.replace(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    say(f"base model: saved {final}")
    return final


def build_info(path: Path) -> dict[str, Any]:
    """What the builder recorded (steps, seconds, dev accuracy, ...); {} for models not built here."""
    try:
        return json.loads((Path(path) / RECIPE_FILE).read_text()).get("build", {})
    except (OSError, ValueError):
        return {}
