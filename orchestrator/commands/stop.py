"""`svgap stop JOB`: stop a Ray job and wait until it has stopped (thin wrapper over Ray's job server)."""
from __future__ import annotations

import argparse

from orchestrator.commands.jobs import add_address_arg


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("stop", help="stop a Ray job")
    p.add_argument("job", help="job id (svgap submit / svgap jobs print it)")
    add_address_arg(p)
    return p


def run(args: argparse.Namespace) -> int:
    from orchestrator.submission import jobs
    from orchestrator.submission.client import Cluster

    state = jobs.stop(Cluster(args.address), args.job)
    print(f"job {args.job} {state}")
    return 0 if state in jobs.TERMINAL else 1
