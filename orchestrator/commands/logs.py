"""`svgap logs JOB [--follow]`: a job's driver output (thin wrapper over Ray's job server)."""
from __future__ import annotations

import argparse
import sys

from orchestrator.commands.jobs import add_address_arg


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("logs", help="print (or follow) a Ray job's logs")
    p.add_argument("job", help="job id (svgap submit / svgap jobs print it)")
    p.add_argument("--follow", action="store_true", help="stream until the job ends; exit with its status")
    p.add_argument("--timeout", type=_seconds, default=None, metavar="SECONDS",
                   help="with --follow: stop following after this long (the job keeps running; exit code 124)")
    add_address_arg(p)
    return p


def run(args: argparse.Namespace) -> int:
    from orchestrator.commands.submit import report
    from orchestrator.submission import jobs
    from orchestrator.submission.client import Cluster

    cluster = Cluster(args.address)
    if not args.follow:
        sys.stdout.write(jobs.logs(cluster, args.job))
        return 0
    try:
        state = jobs.follow(cluster, args.job, timeout_s=args.timeout)
    except KeyboardInterrupt:
        print(f"\nsvgap: stopped following; the job keeps running (svgap stop {args.job} ends it)", file=sys.stderr)
        return 130
    if state not in jobs.TERMINAL:  # --timeout ran out
        print(f"job {args.job} {state}; still running (svgap stop {args.job} ends it)", file=sys.stderr)
        return 124
    return report(cluster, args.job, state)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value
