"""The working dir a job carries: the project (or nothing, with --no-upload) plus the resolved config as a file.

Nothing is written into the project: a temporary staging folder holds one symlink per top-level entry of the project
and the config file `svgap-job.yaml`; Ray's own packaging follows the links, applies the excludes (and the project's
.gitignore / .rayignore, as Ray always does) and zips it. The size check zips it the same way first, so a working dir
over Ray's job upload limit is refused with its size and the largest entries to exclude -- before anything is sent.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.errors import SvgapError

CONFIG_NAME = "svgap-job.yaml"
PROJECT_ROOT = Path(__file__).resolve().parents[2]
# never worth shipping: history, environments, local stores and run outputs, caches, checkpoints
EXCLUDES = [".git", ".venv", "venv", "mlflow.db", "mlruns/", "mlartifacts/", "runs/", ".svgap/", "__pycache__/",
            "*.pyc", ".pytest_cache/", "*.egg-info/", "benchmarks/out/", "checkpoints/", "*.ckpt", ".cache/"]


def upload_limit() -> int:
    """Ray's limit on a job's working dir: the dashboard accepts request bodies up to DASHBOARD_CLIENT_MAX_SIZE and
    the GCS stores packages up to GCS_STORAGE_MAX_SIZE (RAY_max_grpc_message_size)."""
    from ray._private import ray_constants
    from ray._private.runtime_env import packaging

    return min(ray_constants.DASHBOARD_CLIENT_MAX_SIZE, packaging.GCS_STORAGE_MAX_SIZE)


def _include_gitignore() -> bool:
    from ray._private.ray_constants import RAY_RUNTIME_ENV_IGNORE_GITIGNORE

    return os.environ.get(RAY_RUNTIME_ENV_IGNORE_GITIGNORE, "0") != "1"


@dataclass
class WorkDir:
    """A staged working dir; remove() when the job has been submitted (Ray has uploaded it by then)."""
    path: Path
    excludes: list[str] = field(default_factory=list)

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
            from ray._private import ray_constants

            skip = {CONFIG_NAME, *ray_constants.get_runtime_env_default_excludes()}  # Ray leaves those out anyway
            for entry in sorted(root.iterdir()):
                if entry.name not in skip:
                    (tmp / entry.name).symlink_to(entry.resolve(), target_is_directory=entry.is_dir())
        (tmp / CONFIG_NAME).write_text(config_text)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return WorkDir(tmp, (EXCLUDES + list(extra_excludes)) if root is not None else [])


def _largest(work: WorkDir, n: int = 4) -> list[tuple[str, int]]:
    """Sizes (uncompressed) of the top-level entries Ray would ship, largest first."""
    from ray._private.runtime_env.packaging import _dir_travel, _get_excludes, get_excludes_from_ignore_files

    sizes: list[tuple[str, int]] = []
    skip = [_get_excludes(work.path, work.excludes)] + get_excludes_from_ignore_files(
        work.path, include_gitignore=_include_gitignore(), logger=_quiet_logger())
    for entry in work.path.iterdir():
        total = 0

        def add(p: Path) -> None:
            nonlocal total
            if p.is_file():
                total += p.stat().st_size

        _dir_travel(entry, list(skip), add, include_gitignore=_include_gitignore(), logger=_quiet_logger())
        sizes.append((entry.name, total))
    return sorted(sizes, key=lambda x: -x[1])[:n]


def check_size(work: WorkDir) -> int:
    """Zip it as Ray will (Ray's create_package, same excludes and ignore files); refuse it over the limit."""
    from ray._private.runtime_env.packaging import create_package

    with tempfile.TemporaryDirectory() as d:
        target = Path(d) / "pkg.zip"
        create_package(str(work.path), target, include_gitignore=_include_gitignore(), excludes=work.excludes,
                       logger=_quiet_logger())
        size = target.stat().st_size
    limit = upload_limit()
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
