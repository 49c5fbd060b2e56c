"""`svgap logs JOB [--follow]`: a job's driver output (thin wrapper over Ray's job server)."""
from __future__ import annotations

import argparse
import sys

from orchestrator.commands.jobs import add_address_arg


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("logs", help="print (or follow) a Ray job's logs")
    p.add_argument("job", help="job id (svgap submit / svgap jobs print it)")
    p.add_argument("--follow", action="store_true", help="stream until the job ends; exit with its status")
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
        state = jobs.follow(cluster, args.job)
    except KeyboardInterrupt:
        print(f"\nsvgap: stopped following; the job keeps running (svgap stop {args.job} ends it)", file=sys.stderr)
        return 130
    return report(cluster, args.job, state)
