"""MLflow adapter: the one module that knows MLflow. Only the driver calls it; workers return data."""
from __future__ import annotations

import os
from pathlib import Path
from orchestrator.errors import SvgapError

DEFAULT_URI = "sqlite:///mlflow.db"


def resolve_uri(uri: str | None = None) -> str:
    """Explicit URI, else $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db in the working directory."""
    return uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI


def _client(uri: str | None):
    import mlflow
    from mlflow.tracking import MlflowClient

    resolved = resolve_uri(uri)
    mlflow.set_tracking_uri(resolved)
    return MlflowClient(tracking_uri=resolved)


def get_run(run_id: str, uri: str | None = None):
    """The MLflow run, or a one-line SvgapError naming the unknown id / unreachable store."""
    from mlflow.exceptions import MlflowException

    client = _client(uri)
    try:
        return client.get_run(run_id)
    except MlflowException as e:
        code = getattr(e, "error_code", "")
        if "RESOURCE_DOES_NOT_EXIST" in str(code) or "not found" in str(e).lower():
            raise SvgapError(f"unknown MLflow run id {run_id!r} in {resolve_uri(uri)}") from None
        raise SvgapError(f"cannot read MLflow run {run_id!r} from {resolve_uri(uri)}: {str(e).splitlines()[0]}") from None
    except Exception as e:  # connection errors from the REST store
        raise SvgapError(f"tracking server {resolve_uri(uri)} unreachable: {type(e).__name__}") from None


def metric_series(run_id: str, names: list[str], uri: str | None = None) -> dict[str, dict[int, float]]:
    """{metric name: {step: value}} for each name that the run logged (absent names are left out)."""
    get_run(run_id, uri)
    client = _client(uri)
    out: dict[str, dict[int, float]] = {}
    for name in names:
        hist = client.get_metric_history(run_id, name)
        if hist:
            out[name] = {int(m.step): float(m.value) for m in sorted(hist, key=lambda m: (m.step, m.timestamp))}
    return out


def log_artifacts(run_id: str, local_dir: str | Path, artifact_path: str | None = None,
                  uri: str | None = None) -> None:
    """Attach a folder of files (report, fits, tables) to an existing run."""
    _client(uri).log_artifacts(run_id, str(local_dir), artifact_path)


def log_metrics(run_id: str, metrics: dict[str, float], step: int, uri: str | None = None) -> None:
    import time

    from mlflow.entities import Metric

    ts = int(time.time() * 1000)
    ms = [Metric(k, float(v), ts, step) for k, v in metrics.items() if v is not None]
    if ms:
        _client(uri).log_batch(run_id, metrics=ms)

