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


def add_study_args(p: argparse.ArgumentParser, noun: str, seeds: int, seeds_help: str) -> None:
    """The last arguments of a study command: seeds per point, --yes for a large study, where to run and log."""
    p.add_argument("--seeds", type=int, default=seeds, metavar="K", help=seeds_help)
    p.add_argument("--yes", action="store_true", help=f"run a study larger than 16 {noun}")
    add_cluster_args(p)


def config_data(args: argparse.Namespace) -> dict:
    """The config mapping a study varies (--set applied, not yet validated: each variant is)."""
    return config.resolve_mapping(args.config, args.overrides)


def run_study(spec, summary, args: argparse.Namespace):
    """Runs (or restores) the study on the cluster and MLflow the command names; its StudyResult."""
    from orchestrator.studies.study import Study

    return Study(spec, address=args.address, tracking_uri=args.tracking_uri, experiment_name=args.experiment,
                 summary=summary).run()


def study_end(res, folder: str, noun: str) -> int:
    """Where the study's parent run and files are; exit status 1, with the failures named, if any experiment
    failed."""
    import sys

    from orchestrator.store import tracking

    print(f"MLflow parent run id: {res.parent_run_id}")
    print(f"{folder}: {res.out_dir}")
    print(f"to look at it: {tracking.ui_hint(res.tracking_uri)}")
    failed = [o for o in res.outcomes if o.error]
    if failed:
        sys.stderr.write(f"svgap: error: {len(failed)} of {len(res.outcomes)} {noun} failed: "
                         + "; ".join(f"{o.variant.label}: {o.error}" for o in failed) + "\n")
        return 1
    return 0
