"""`svgap allocate`: the external-data allocation study (docs/theory.md §5) -- a study (orchestrator/studies) over
external.strategy x seeds with the same budget, nested MLflow runs under one parent run, then the paper-style table
(orchestrator/studies/allocation.py). Running the same command again restores the study."""
from __future__ import annotations

import argparse

from orchestrator.commands.common import add_config_args, add_study_args, config_data, run_study, study_end


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("allocate", help="run the external-data allocation study (strategies x seeds) and tabulate it")
    add_config_args(p)
    p.add_argument("--budget", type=int, default=None, metavar="M",
                   help="external examples per experiment (default: the config's external.budget)")
    p.add_argument("--strategies", default="none,early,uniform,late",
                   help="comma-separated: none, early, uniform, late, explicit, planned (default: "
                        "none,early,uniform,late)")
    add_study_args(p, "experiments", 2, "seeds per strategy: the config's seed, seed+1, ... (default 2)")
    return p


def run(args: argparse.Namespace) -> int:
    from orchestrator.config.registry import study_summary
    from orchestrator.studies.allocation import parse_strategies, study_data
    from orchestrator.studies.study import StudySpec

    strategies = parse_strategies(args.strategies)
    data, grid = study_data(config_data(args), args.budget, strategies)
    spec = StudySpec("allocation", data, grid, args.seeds, yes=args.yes,
                     params={"budget": data.get("external", {}).get("budget", 0), "strategies": ",".join(strategies)})
    summary = study_summary("allocation")
    res = run_study(spec, summary, args)
    print(summary.to_markdown(res.table), end="")
    print(f"wall time {res.seconds:.0f}s ({len(res.outcomes)} experiments, at most {res.concurrency} at a time, "
          f"{res.ran} run by this command)")
    return study_end(res, "table files", "experiments")
