"""`svgap sync RUN_DIR`: push a run folder to a tracking store after the fact (orchestrator/store/sync.py)."""
from __future__ import annotations

import argparse


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("sync", help="push a run folder (runs/<run id>) to an MLflow tracking store; sends only "
                                    "what the store lacks")
    p.add_argument("run_dir", help="the run folder, e.g. runs/<run id>")
    p.add_argument("--tracking-uri", default=None, help="target store (default: the run's config, else "
                                                       "$MLFLOW_TRACKING_URI, else sqlite:///mlflow.db)")
    p.add_argument("--experiment", default=None, help="MLflow experiment of a new run (default: the run's config)")
    return p


def run(args: argparse.Namespace) -> int:
    from orchestrator.store import tracking
    from orchestrator.store.sync import sync

    res = sync(args.run_dir, args.tracking_uri, args.experiment)
    rounds = f"{res.rounds[0]}..{res.rounds[-1]}" if res.rounds else "none"
    print(f"run {res.run_id} ({'new' if res.created else 'continued'}): rounds {rounds}, {res.metrics_sent} metric "
          f"values sent, {res.metrics_present} already there, {len(res.artifacts_sent)} artifact(s) sent"
          f"{', finished' if res.finished else ''}")
    print(f"to look at it: {tracking.ui_hint(res.uri)}")
    return 0
