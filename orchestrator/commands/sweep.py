"""`svgap sweep CONFIG --grid key=v1,v2 [--grid ...] [--seeds K]`: every grid point x seed is one experiment = one
Ray Tune trial, nested MLflow runs under one parent run, then the summary table and plots (orchestrator/studies).
Running the same command again restores the study and runs only what did not finish."""
from __future__ import annotations

import argparse

from orchestrator.commands.common import add_config_args, add_study_args, config_data, run_study, study_end
from orchestrator.config.registry import grid_studies


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("sweep", help="run a study: grid points x seeds, one Ray Tune trial each, and tabulate it")
    add_config_args(p)
    p.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2",
                   help="a swept config key and its values, e.g. --grid generation.n=4,8 (repeatable: the product)")
    p.add_argument("--stop-by-theory", action="store_true",
                   help="stop a trial from its 4th measured round on when its fitted U_s,inf interval cannot beat "
                        "the best trial's")
    p.add_argument("--kind", choices=grid_studies(), default="sweep",
                   help="scaling: also tabulate stage times and speed-up vs the fewest generation actors")
    p.add_argument("--max-concurrent", type=int, default=None, metavar="K",
                   help="at most K trials at a time (default: as many as the cluster holds; --kind scaling: 1, so "
                        "the points' timings do not share the machine)")
    p.add_argument("--max-failures", type=int, default=1, metavar="K",
                   help="Tune retries a failed trial this many times (default 1)")
    add_study_args(p, "trials", 1, "seeds per point: seed, seed+1, ... (default 1)")
    return p


def run(args: argparse.Namespace) -> int:
    from orchestrator.errors import SvgapError
    from orchestrator.studies.study import StudySpec
    from orchestrator.config.registry import study_summary
    from orchestrator.studies.variants import parse_grid

    if not args.grid:
        raise SvgapError("--grid: name at least one swept key, e.g. --grid generation.n=4,8")
    if args.max_failures < 0:
        raise SvgapError(f"--max-failures must be >= 0, got {args.max_failures}")
    data = config_data(args)
    if args.max_concurrent is not None and args.max_concurrent < 1:
        raise SvgapError(f"--max-concurrent must be >= 1, got {args.max_concurrent}")
    concurrent = args.max_concurrent or (1 if args.kind == "scaling" else None)
    spec = StudySpec(args.kind, data, parse_grid(args.grid), args.seeds, stop_by_theory=args.stop_by_theory,
                     max_failures=args.max_failures, yes=args.yes, max_concurrent=concurrent)
    summary = study_summary(args.kind)
    res = run_study(spec, summary, args)
    print(summary.to_markdown(res.table), end="")
    if res.restored and res.ran == 0:
        print("nothing left to run: every trial of this study had finished before")
    return study_end(res, "study folder (table, plots, Tune state)", "trials")
