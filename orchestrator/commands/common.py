"""Arguments and printing shared by commands (thin helpers; no logic of the experiment here)."""
from __future__ import annotations

import argparse

from orchestrator import config


def add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", nargs="?", default=None,
                   help="experiment YAML (default: configs/arithmetic.yaml)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set generation.n=8 (repeatable)")


def load_config(args: argparse.Namespace) -> config.ExperimentConfig:
    from orchestrator import redact

    cfg = config.resolve(args.config, args.overrides)
    redact.remember(cfg.tracking.uri)  # a password in the config's URI is masked in every line from here on
    return cfg


def add_cluster_args(p: argparse.ArgumentParser) -> None:
    """Where to run and where to log: shared by every command that runs experiments."""
    p.add_argument("--address", default=None, help="join a Ray cluster: auto or HOST:PORT (default: start Ray here)")
    p.add_argument("--tracking-uri", default=None, help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI or "
                                                       "sqlite:///mlflow.db)")
    p.add_argument("--experiment", default=None, help="MLflow experiment name (default: tracking.experiment)")
