"""The default recipe's base model, shipped with the package: the same π_0 on every machine.

The recipe (pretrain.py) is deterministic on one machine but not across CPUs: float kernels differ, so two machines
built two different models from the same recipe (fingerprints 904e15cda492bbbc and 30a0eef108021a0f) and the
README's numbers were not what a newcomer got. So the default recipe's weights, built once by the project's own
`pretrain`, live in `shipped/` (about 1 MB of safetensors), with the recipe they were built from, a SHA-256 of their
files and their fingerprint. `ArithmeticWorkload.base_model` uses them whenever the recipe asked for is exactly
that one; any other recipe is still built locally (cache.py). benchmarks/shipped_weights.py rebuilds the default
recipe on the machine it runs on and says whether it reproduces the shipped weights (it does on the machine that
shipped them; it may not on another CPU, which is why they are shipped), and `--write` reships them.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from orchestrator.errors import SvgapError

from .cache import RECIPE_FILE, content_digest

log = logging.getLogger(__name__)

SHIPPED = Path(__file__).resolve().parent / "shipped"


def info(root: Path = SHIPPED) -> dict[str, Any] | None:
    """The shipped recipe file ({name, recipe, build, sha256, fingerprint, built_on}), None when nothing is shipped."""
    try:
        return json.loads((root / RECIPE_FILE).read_text())
    except (OSError, ValueError):
        return None


def shipped_model(recipe: dict[str, Any], root: Path = SHIPPED) -> Path | None:
    """The shipped model folder when `recipe` is the shipped one (checksum verified), else None."""
    data = info(root)
    if data is None or data.get("recipe") != recipe:
        return None
    if content_digest(root) != data.get("sha256"):
        raise SvgapError(f"the base model shipped with svgap ({root}) does not match its recorded SHA-256: the "
                         f"installation is damaged; reinstall svgap")
    return root


def cache_recipe(recipe: dict[str, Any], root: Path = SHIPPED) -> dict[str, Any]:
    """The cache key of the shipped weights: the recipe plus their checksum, so a cache that holds a local build of
    the same recipe (other weights on another CPU) is not taken for them."""
    return {**recipe, "weights": "shipped", "sha256": (info(root) or {}).get("sha256")}


def install(out: Path, root: Path = SHIPPED) -> dict[str, Any]:
    """Copy the shipped model into a cache entry being made (cache.cached_build checksums it again)."""
    import shutil

    log.info(f"base model: the default recipe's weights ship with svgap; copying them from {root}")
    for f in sorted(root.iterdir()):
        if f.is_file() and f.name != RECIPE_FILE:
            shutil.copyfile(f, Path(out) / f.name)
    data = info(root) or {}
    return {**data.get("build", {}), "source": "shipped", "fingerprint": data.get("fingerprint"),
            "built_on": data.get("built_on")}


def write(source: Path, recipe: dict[str, Any], fingerprint: str, built_on: dict[str, Any],
          root: Path = SHIPPED) -> Path:
    """Ship the model folder `source` (a cache entry built from `recipe`): copy its files, record recipe, build info,
    checksum, fingerprint and the machine it was built on."""
    import shutil

    root.mkdir(parents=True, exist_ok=True)
    for old in root.iterdir():
        old.unlink()
    for f in sorted(Path(source).iterdir()):
        if f.is_file() and f.name != RECIPE_FILE and not f.name.startswith("."):
            shutil.copyfile(f, root / f.name)
    build = {}
    try:
        build = json.loads((Path(source) / RECIPE_FILE).read_text()).get("build", {})
    except (OSError, ValueError):
        pass
    (root / RECIPE_FILE).write_text(json.dumps({"name": "arithmetic-shipped", "recipe": recipe, "build": build,
                                                "sha256": content_digest(root), "fingerprint": fingerprint,
                                                "built_on": built_on}, indent=2) + "\n")
    return root
