"""`svgap report RUN_ID`: PNG figures and a self-contained HTML page of a run (measured uncertainties with the
fitted gap dynamics, accuracies per round), logged to the run under report/."""
from __future__ import annotations

import argparse


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("report", help="plot a run (PNG + self-contained HTML) and attach it to the run")
    p.add_argument("run_id", metavar="RUN_ID", help="MLflow run id")
    p.add_argument("--out", default=None, metavar="DIR", help="output folder (default: runs/RUN_ID/report)")
    p.add_argument("--quantity", choices=("total", "per_token"), default="total",
                   help="which uncertainty to fit and plot (default total)")
    p.add_argument("--eps", type=float, default=0.05, help="eps of Corollary 3.2")
    p.add_argument("--no-log", action="store_true", help="do not attach the files to the run")
    p.add_argument("--tracking-uri", default=None, help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI or "
                                                       "sqlite:///mlflow.db)")
    return p


def run(args: argparse.Namespace) -> int:
    from orchestrator.report.html import build_report

    files = build_report(args.run_id, args.out, uri=args.tracking_uri, quantity=args.quantity, eps=args.eps,
                         log=not args.no_log)
    for f in files.figures:
        print(f"figure: {f}")
    print(f"report: {files.html}")
    if files.fit is not None:
        print(f"fit: {files.fit.verdict}")
    if not args.no_log:
        print(f"logged to run {args.run_id} under report/")
    return 0
