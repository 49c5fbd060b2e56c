"""The working dir a job carries: the project (or nothing, with --no-upload) plus the resolved config as a file.

Nothing is written into the project: a temporary staging folder holds one symlink per top-level entry of the project
and the config file `svgap-job.yaml`; Ray's own packaging (through ray_adapter.py) follows the links, applies the
excludes (and the project's .gitignore / .rayignore, as Ray always does) and zips it. The size check zips it the same way first, so a working dir
over Ray's job upload limit is refused with its size and the largest entries to exclude -- before anything is sent.
Secrets stay home: `.env` files, keys and certificates, credentials folders and the local stores are excluded, and a
symbolic link leading outside the project is refused (Ray would follow it and upload its target).
"""
from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.errors import SvgapError
from orchestrator.submission import ray_adapter

CONFIG_NAME = "svgap-job.yaml"
PROJECT_ROOT = Path(__file__).resolve().parents[2]
# never worth shipping: history, environments, local stores and run outputs, caches, checkpoints -- and never to
# be shipped: secrets (.env files, keys, certificates, credentials) that a project folder often holds
EXCLUDES = [".git", ".venv", "venv", "mlflow.db", "mlruns/", "mlartifacts/", "runs/", ".svgap/", "__pycache__/",
            "*.pyc", ".pytest_cache/", "*.egg-info/", "benchmarks/out/", "checkpoints/", "*.ckpt", ".cache/",
            ".mypy_cache/", ".ruff_cache/", ".hypothesis/", ".ipynb_checkpoints/", "node_modules/",
            ".env", ".env.*", "*.pem", "*.key", "id_rsa*", "id_ed25519*", "id_ecdsa*", ".netrc", ".pypirc",
            ".aws/", ".ssh/", "*.db-journal"]


@dataclass
class WorkDir:
    """A staged working dir; remove() when the job has been submitted (Ray has uploaded it by then)."""
    path: Path
    excludes: list[str] = field(default_factory=list)
    root: Path | None = None  # the project folder it ships (None: only the config)

    def runtime_env(self) -> dict:
        return {"working_dir": str(self.path), "excludes": list(self.excludes)}

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def stage(config_text: str, root: Path | None, extra_excludes: list[str] = ()) -> WorkDir:
    """root None: only the config travels (the cluster has svgap installed)."""
    tmp = Path(tempfile.mkdtemp(prefix="svgap-job-"))
    try:
        if root is not None:
            if not (root / "orchestrator").is_dir() or not (root / "pyproject.toml").is_file():
                # e.g. svgap installed into site-packages: that folder is no project to ship
                raise SvgapError(f"working dir {root}: not an svgap project folder (no orchestrator/ and "
                                 f"pyproject.toml in it); pass --working-dir PROJECT, or --no-upload when the "
                                 f"cluster has svgap installed")
            skip = {CONFIG_NAME, *ray_adapter.default_excludes()}  # Ray leaves those out anyway
            for entry in sorted(root.iterdir()):
                if entry.name not in skip:
                    (tmp / entry.name).symlink_to(entry.resolve(), target_is_directory=entry.is_dir())
        (tmp / CONFIG_NAME).write_text(config_text)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return WorkDir(tmp, (EXCLUDES + list(extra_excludes)) if root is not None else [], root)


def check_links(work: WorkDir) -> None:
    """Refuse a symbolic link that leaves the project: Ray follows links when it packages, so it would upload what
    the link points at (~/.ssh, another project, the whole disk)."""
    if work.root is None:
        return
    root = work.root.resolve()
    skip = work.excludes + sorted(ray_adapter.default_excludes())
    outside = [(p, p.resolve()) for p in ray_adapter.symlinks_like_ray(root, skip, _quiet_logger())
               if not p.resolve().is_relative_to(root)]
    if outside:
        shown = ", ".join(f"{p.relative_to(root)} -> {target}" for p, target in outside[:3])
        raise SvgapError(f"working dir {root}: {len(outside)} symbolic link(s) lead outside it ({shown}); Ray would "
                         f"upload what they point at; remove them, or leave them out with --exclude PATTERN")


def _largest(work: WorkDir, n: int = 4) -> list[tuple[str, int]]:
    """Sizes (uncompressed) of the top-level entries Ray would ship, largest first."""
    sizes: list[tuple[str, int]] = []
    for entry in work.path.iterdir():
        total = 0

        def add(p: Path) -> None:
            nonlocal total
            if p.is_file():
                total += p.stat().st_size

        ray_adapter.walk_like_ray(work.path, entry, work.excludes, add, _quiet_logger())
        sizes.append((entry.name, total))
    return sorted(sizes, key=lambda x: -x[1])[:n]


def check_size(work: WorkDir) -> int:
    """Zip it as Ray will (Ray's create_package, same excludes and ignore files); refuse it over the limit."""
    with tempfile.TemporaryDirectory() as d:
        target = Path(d) / "pkg.zip"
        ray_adapter.zip_like_ray(work.path, target, work.excludes, _quiet_logger())
        size = target.stat().st_size
    limit = ray_adapter.upload_limit()
    if size >= limit:
        big = ", ".join(f"{name} {mib(b)}" for name, b in _largest(work) if b)
        raise SvgapError(f"working dir {mib(size)} zipped is over Ray's job upload limit of {mib(limit)}; largest "
                         f"entries: {big}; add --exclude PATTERN for what the job does not need (or list it in "
                         f".rayignore), or use --no-upload on a cluster with svgap installed")
    return size


def mib(n: float) -> str:
    return f"{n / 1024 ** 2:.1f} MiB"


def _quiet_logger():
    import logging

    log = logging.getLogger("svgap.workdir")
    log.setLevel(logging.ERROR)  # Ray's per-file size warnings: the check above says it in one line
    return log
