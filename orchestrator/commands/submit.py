"""`svgap submit`: run an experiment as a Ray job on a cluster (orchestrator/submission/)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from orchestrator.commands.common import add_config_args, load_config


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("submit", help="submit an experiment to a Ray cluster as a job (Ray's job server)")
    add_config_args(p)
    p.add_argument("--address", default=None,
                   help="the cluster's dashboard URL http://HEAD:8265 (default: $RAY_ADDRESS)")
    p.add_argument("--tracking-uri", default=None,
                   help="MLflow server the job logs to (default: $MLFLOW_TRACKING_URI, else the config's)")
    p.add_argument("--experiment", default=None, help="MLflow experiment name (default: tracking.experiment)")
    p.add_argument("--name", default=None, help="job name: prefix of the job id and the MLflow run name")
    p.add_argument("--follow", action="store_true", help="stream the job's logs and exit with its status")
    p.add_argument("--no-upload", action="store_true",
                   help="ship only the config (the cluster has svgap installed) instead of the project folder")
    p.add_argument("--working-dir", type=Path, default=None,
                   help="project folder to upload (default: the svgap project this command runs from)")
    p.add_argument("--exclude", action="append", default=[], metavar="PATTERN",
                   help="leave out of the upload (gitignore syntax; repeatable), added to svgap's own excludes")
    return p


def run(args: argparse.Namespace) -> int:
    from orchestrator import redact
    from orchestrator.submission import jobs

    cfg = load_config(args)
    cluster, job = jobs.submit(cfg, address=args.address, tracking_uri=args.tracking_uri,
                               experiment=args.experiment, name=args.name, upload=not args.no_upload,
                               root=args.working_dir.resolve() if args.working_dir else None,
                               excludes=args.exclude)
    print(f"submitted job {job.job_id} to {job.address}")
    print(f"dashboard: {job.dashboard}")
    print(f"MLflow: {redact.uri(job.tracking_uri)} (experiment {job.experiment})")
    if not args.follow:
        print(f"follow the logs: svgap logs {job.job_id} --follow    stop it: svgap stop {job.job_id}")
        return 0
    sys.stdout.flush()
    try:
        state = jobs.follow(cluster, job.job_id)
    except KeyboardInterrupt:
        print(f"\nsvgap: stopped following; the job keeps running (svgap stop {job.job_id} ends it)",
              file=sys.stderr)
        return 130
    return report(cluster, job.job_id, state)


def report(cluster, job_id: str, state: str) -> int:
    """One closing line on stderr; exit 0 only for SUCCEEDED."""
    from orchestrator.submission import jobs

    why = "" if state == "SUCCEEDED" else jobs.message(cluster, job_id)
    print(f"job {job_id} {state}" + (f": {why}" if why else ""), file=sys.stderr)
    return 0 if state == "SUCCEEDED" else 1
