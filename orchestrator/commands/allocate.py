"""`svgap allocate`: the external-data allocation study (docs/theory.md §5) -- a study (orchestrator/studies) over
external.strategy x seeds with the same budget, nested MLflow runs under one parent run, then the paper-style table
(orchestrator/studies/allocation.py). Running the same command again restores the study."""
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
    p.add_argument("--yes", action="store_true", help="run a study larger than 16 experiments")
    add_cluster_args(p)
    return p


def run(args: argparse.Namespace) -> int:
    import sys

    from orchestrator import config

    from orchestrator.store import tracking
    from orchestrator.studies.allocation import AllocationSummary, parse_strategies, study_data
    from orchestrator.studies.study import Study, StudySpec

    strategies = parse_strategies(args.strategies)
    data = config.resolve_mapping(args.config, args.overrides)
    data, grid = study_data(data, args.budget, strategies)
    spec = StudySpec("allocation", data, grid, args.seeds, yes=args.yes,
                     params={"budget": data.get("external", {}).get("budget", 0), "strategies": ",".join(strategies)})
    summary = AllocationSummary()
    res = Study(spec, address=args.address, tracking_uri=args.tracking_uri, experiment_name=args.experiment,
                summary=summary).run()
    print(summary.to_markdown(res.table), end="")
    print(f"wall time {res.seconds:.0f}s ({len(res.outcomes)} experiments, at most {res.concurrency} at a time, "
          f"{res.ran} run by this command)")
    print(f"MLflow parent run id: {res.parent_run_id}")
    print(f"table files: {res.out_dir}")
    print(f"to look at it: {tracking.ui_hint(res.tracking_uri)}")
    failed = [o for o in res.outcomes if o.error]
    if failed:
        sys.stderr.write(f"svgap: error: {len(failed)} of {len(res.outcomes)} experiments failed: "
                         + "; ".join(f"{o.variant.label}: {o.error}" for o in failed) + "\n")
        return 1
    return 0
