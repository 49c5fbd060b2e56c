"""The one place svgap reaches into `ray._private`: Ray's job packaging, which has no public API.

`svgap submit` must refuse a working dir over Ray's upload limit *before* sending it, and name what to exclude. Only
Ray's own packaging code knows the limit, its default excludes, how it honours .gitignore/.rayignore and how big the
zip comes out, so this module calls it (ray._private.runtime_env.packaging, ray._private.ray_constants) rather than
copying it: a copy would drift from what Ray then ships. Everything else in svgap uses Ray's public APIs
(ray.job_submission, ray.util, ray.tune, ...). When Ray changes these internals, this file is what to fix.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Callable

# the loggers of Ray's packaging steps (quietened by the job client: svgap says what matters in one line)
PACKAGING_LOGGERS = ("ray._private.runtime_env.packaging", "ray._private.runtime_env.working_dir")


def upload_limit() -> int:
    """Ray's limit on a job's working dir: the dashboard accepts request bodies up to DASHBOARD_CLIENT_MAX_SIZE and
    the GCS stores packages up to GCS_STORAGE_MAX_SIZE (RAY_max_grpc_message_size)."""
    from ray._private import ray_constants
    from ray._private.runtime_env import packaging

    return min(ray_constants.DASHBOARD_CLIENT_MAX_SIZE, packaging.GCS_STORAGE_MAX_SIZE)


def include_gitignore() -> bool:
    """Whether Ray's packaging honours .gitignore (it does unless RAY_RUNTIME_ENV_IGNORE_GITIGNORE=1)."""
    from ray._private.ray_constants import RAY_RUNTIME_ENV_IGNORE_GITIGNORE

    return os.environ.get(RAY_RUNTIME_ENV_IGNORE_GITIGNORE, "0") != "1"


def default_excludes() -> set[str]:
    """What Ray leaves out of every working dir anyway (.git, ...)."""
    from ray._private import ray_constants

    return set(ray_constants.get_runtime_env_default_excludes())


def zip_like_ray(folder: Path, target: Path, excludes: list[str], logger: logging.Logger) -> None:
    """Zip `folder` to `target` exactly as Ray packages a job's working dir (same excludes and ignore files)."""
    from ray._private.runtime_env.packaging import create_package

    create_package(str(folder), target, include_gitignore=include_gitignore(), excludes=excludes, logger=logger)


def walk_like_ray(folder: Path, entry: Path, excludes: list[str], visit: Callable[[Path], None],
                  logger: logging.Logger) -> None:
    """Call visit(path) for every path under `entry` that Ray would ship from `folder`."""
    from ray._private.runtime_env.packaging import _dir_travel, _get_excludes, get_excludes_from_ignore_files

    skip = [_get_excludes(folder, excludes)] + get_excludes_from_ignore_files(
        folder, include_gitignore=include_gitignore(), logger=logger)
    _dir_travel(entry, skip, visit, include_gitignore=include_gitignore(), logger=logger)


def symlinks_like_ray(folder: Path, excludes: list[str], logger: logging.Logger) -> list[Path]:
    """Every symbolic link under `folder` that Ray would ship (same excludes and ignore files). Ray follows links
    when it packages, so a link is what decides whether something outside the folder travels; linked folders are
    not entered here (a link to / would be the whole disk)."""
    from ray._private.runtime_env.packaging import _get_excludes, get_excludes_from_ignore_files

    skip = [_get_excludes(folder, excludes)]
    found: list[Path] = []

    def travel(path: Path) -> None:
        own = get_excludes_from_ignore_files(path, include_gitignore=include_gitignore(), logger=logger)
        skip.extend(own)
        if not any(e(path) for e in skip):
            if path.is_symlink():
                found.append(path)
            elif path.is_dir():
                for sub in sorted(path.iterdir()):
                    travel(sub)
        del skip[len(skip) - len(own):]

    travel(folder)
    return found
