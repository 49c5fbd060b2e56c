"""`svgap report RUN_ID`: PNG figures and a self-contained HTML page of a run (measured uncertainties with the
fitted gap dynamics, accuracies per round, the accuracy link), logged to the run under report/.
`svgap report --table [--sweep PARENT_RUN_ID | --experiment NAME]`: one table of every run's fit quality (R² of U_s,
U_v, G and of the accuracy link, rate, limits) over the store, an experiment or a sweep."""
from __future__ import annotations

import argparse
from pathlib import Path

from orchestrator.errors import SvgapError


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("report", help="plot a run (PNG + self-contained HTML) and attach it to the run; or --table: "
                                      "the fit quality of every run")
    p.add_argument("run_id", metavar="RUN_ID", nargs="?", default=None, help="MLflow run id")
    p.add_argument("--table", action="store_true", help="one table of every run's R² (U_s, U_v, G, accuracy link), "
                                                        "rate and limits (with --sweep or --experiment: those runs)")
    p.add_argument("--sweep", metavar="PARENT_RUN_ID", default=None, help="--table: the runs of this sweep (the "
                                                                          "table is attached to its parent run)")
    p.add_argument("--experiment", metavar="NAME", default=None, help="--table: the runs of this experiment")
    p.add_argument("--out", default=None, metavar="DIR", help="output folder (default: runs/RUN_ID/report)")
    p.add_argument("--quantity", choices=("total", "per_token"), default="total",
                   help="which uncertainty to fit and plot (default total)")
    p.add_argument("--eps", type=float, default=0.05, help="eps of Corollary 3.2")
    p.add_argument("--n-boot", type=int, default=200, help="bootstrap replicates of the fit's CIs (default 200)")
    p.add_argument("--no-log", action="store_true", help="do not attach the files to the run")
    p.add_argument("--tracking-uri", default=None, help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI or "
                                                       "sqlite:///mlflow.db)")
    return p


def table(args: argparse.Namespace) -> int:
    from orchestrator.report.fit_table import store_table, to_markdown, write
    from orchestrator.store import mirror, tracking

    if args.run_id is not None or (args.sweep and args.experiment):
        raise SvgapError("--table takes no RUN_ID, and one of --sweep or --experiment at most")
    runs = tracking.child_runs(args.sweep, args.tracking_uri) if args.sweep else \
        tracking.store_runs(args.experiment, args.tracking_uri)
    rows = store_table(runs, args.tracking_uri, args.quantity)
    print(to_markdown(rows) if rows else "no run with a measured U_s/U_v")
    out = Path(args.out) if args.out else (Path("runs") / args.sweep / "report" if args.sweep else None)
    if out is not None and rows:
        files = write(rows, out)
        print(f"fit table: {files[1]}")
        if args.sweep and not args.no_log:
            for f in files:
                mirror.log_artifact(args.sweep, f, "report", args.tracking_uri)
            print(f"logged to run {args.sweep} under report/")
    return 0


def run(args: argparse.Namespace) -> int:
    from orchestrator.report.html import build_report

    if args.table:
        return table(args)
    if args.run_id is None:
        raise SvgapError("report needs a RUN_ID (or --table)")
    if args.n_boot < 0:
        raise SvgapError(f"--n-boot must be >= 0, got {args.n_boot}")
    files = build_report(args.run_id, args.out, uri=args.tracking_uri, quantity=args.quantity, eps=args.eps,
                         n_boot=args.n_boot, log=not args.no_log)
    for f in files.figures:
        print(f"figure: {f}")
    print(f"report: {files.html}")
    if files.fit is not None:
        print(f"fit: {files.fit.verdict}")
    if files.link is not None:
        lk = files.link
        print("accuracy link: " + (f"held-out acc = 1/(1+exp(-({lk.a:.4g} - {lk.b:.4g} U_s))), R² {lk.r2:.3f}, "
                                   f"Spearman {lk.spearman if lk.spearman is None else round(lk.spearman, 3)}"
                                   if lk.r2 is not None else f"none ({lk.why})"))
    if not args.no_log:
        print(f"logged to run {args.run_id} under report/")
    return 0
