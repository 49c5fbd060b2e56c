"""Shared fixtures. The default base model is built once (about 2-3 minutes on 2 CPU cores) and cached on disk under
$SVGAP_CACHE or ~/.cache/svgap, so later pytest runs load it in about a second."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest


@pytest.fixture
def tracking_uri(tmp_path) -> str:
    """A fresh sqlite tracking store of this test: tmp_path/mlflow.db (created by MLflow on first use)."""
    from stores import sqlite_uri

    return sqlite_uri(tmp_path / "mlflow.db")


@pytest.fixture
def run_store(tmp_path):
    """A fresh run folder of this test (tmp_path/run) as the controller prepares it (the default config)."""
    from orchestrator import config
    from orchestrator.store.run_store import RunFiles

    files = RunFiles(tmp_path / "run")
    files.prepare(config.dump(config.load()))
    return files


def cache_root() -> Path:
    return Path(os.environ.get("SVGAP_CACHE") or "~/.cache/svgap").expanduser()


@pytest.fixture(scope="session")
def svgap_cache() -> Path:
    """The model cache shared by tests (and with `svgap` itself when SVGAP_CACHE is unset)."""
    return cache_root()


@pytest.fixture(scope="session")
def default_workload():
    """The workload of the default experiment config (configs/arithmetic.yaml)."""
    import workloads
    from orchestrator.config import load

    cfg = load()
    return workloads.get(cfg.workload.name, cfg.workload.options)


@pytest.fixture(scope="session")
def base_model_dir(default_workload, svgap_cache) -> Path:
    """Directory of the DEFAULT base model (save_pretrained + tokenizer), built on first use and cached."""
    return Path(default_workload.base_model(svgap_cache))


@pytest.fixture
def said():
    """svgap's log messages (INFO and up) while the test runs, as a list that grows: what a user would read."""
    import logging

    from orchestrator.log import capture

    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    with capture(Collect(logging.INFO)):
        yield lines


@pytest.fixture(scope="session")
def local_ray():
    """One real local Ray (2 CPUs, like the CI machine) for every test that needs it. Test-only actor classes in
    tests/ray_helpers.py reach the workers through PYTHONPATH."""
    import ray
    here = os.path.dirname(__file__)
    if here not in sys.path:
        sys.path.insert(0, here)
    os.environ["PYTHONPATH"] = here + os.pathsep + os.environ.get("PYTHONPATH", "")
    # address="local": a new Ray of our own, never a cluster someone else started on this machine (ray start, or a
    # ray.cluster_utils.Cluster of another test process), which plain ray.init() would join
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()
