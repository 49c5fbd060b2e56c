"""`svgap allocate`: the external-data allocation study (docs/theory.md §5) -- one experiment per (strategy, seed) with the
same budget, nested MLflow runs under one parent run, then the paper-style table (orchestrator/allocation_study.py)."""
from __future__ import annotations

import argparse

from orchestrator.commands.common import add_cluster_args, add_config_args


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("allocate", help="run the external-data allocation study (strategies x seeds) and tabulate it")
    add_config_args(p)
    p.add_argument("--budget", type=int, default=None, metavar="M",
                   help="external examples per experiment (default: the config's external.budget)")
    p.add_argument("--strategies", default="none,early,uniform,late",
                   help="comma-separated: none, early, uniform, late, explicit, planned (default: "
                        "none,early,uniform,late)")
    p.add_argument("--seeds", type=int, default=2, metavar="K",
                   help="seeds per strategy: the config's seed, seed+1, ... (default 2)")
    add_cluster_args(p)
    return p


def run(args: argparse.Namespace) -> int:
    import sys

    from orchestrator import config, tracking
    from orchestrator.allocation_study import AllocationStudy, parse_strategies
    from orchestrator.allocation_table import to_markdown

    data = config.apply_overrides(config.read_yaml(args.config or config.DEFAULT_CONFIG), args.overrides)
    study = AllocationStudy(data, budget=args.budget, strategies=parse_strategies(args.strategies),
                            seeds=args.seeds, address=args.address, tracking_uri=args.tracking_uri,
                            experiment_name=args.experiment)
    res = study.run()
    print(to_markdown(res.table), end="")
    print(f"wall time {res.seconds:.0f}s ({len(res.outcomes)} experiments, {res.concurrency} at a time)")
    print(f"MLflow parent run id: {res.parent_run_id}")
    print(f"table files: {res.out_dir}")
    print(f"to look at it: {tracking.ui_hint(res.tracking_uri)}")
    failed = [o for o in res.outcomes if o.error]
    if failed:
        sys.stderr.write(f"svgap: error: {len(failed)} of {len(res.outcomes)} experiments failed: "
                         + "; ".join(f"{o.variant.label}: {o.error}" for o in failed) + "\n")
        return 1
    return 0
