"""`tracking`: where a run logs (MLflow) and keeps its files."""
from __future__ import annotations

from pydantic import Field

from orchestrator.config.fields import Section


class TrackingConfig(Section):
    """MLflow: `uri` null means $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db in the working directory."""
    uri: str | None = Field(None, description="MLflow tracking URI")
    experiment: str = Field("svgap", description="MLflow experiment name")
    run_name: str | None = Field(None, description="MLflow run name")
    out_dir: str = Field("runs", description="folder of the run folders (round records, config.yaml, weights)")
