"""`svgap jobs`: the jobs on a Ray cluster, newest first (thin wrapper over Ray's job server)."""
from __future__ import annotations

import argparse
import sys
import time


def add_address_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--address", default=None,
                   help="the cluster's dashboard URL http://HEAD:8265 (default: $RAY_ADDRESS)")


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("jobs", help="list the jobs on a Ray cluster")
    add_address_arg(p)
    return p


def _when(ms: int | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ms / 1000)) if ms else "-"


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from orchestrator.submission import jobs
    from orchestrator.submission.client import Cluster

    cluster = Cluster(args.address)
    rows = jobs.listing(cluster)
    table = Table(title=f"jobs on {cluster.address}")
    for col in ("job id", "status", "started", "took", "experiment", "entrypoint"):
        table.add_column(col)
    for j in rows:
        took = f"{((j.end_time or time.time() * 1000) - j.start_time) / 1000:.0f}s" if j.start_time else "-"
        meta = j.metadata or {}
        table.add_row(j.submission_id or j.job_id or "-", str(j.status.value), _when(j.start_time), took,
                      meta.get("experiment", ""), (j.entrypoint or "")[:60])
    Console(width=None if sys.stdout.isatty() else 160).print(table)
    return 0
