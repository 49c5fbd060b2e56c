"""`svgap run`: one self-improvement experiment, rounds 0..T, tracked in MLflow."""
from __future__ import annotations

import argparse
import sys

from orchestrator.commands.common import add_cluster_args, add_config_args, load_config


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("run", help="run a self-improvement experiment (Ray in-process unless --address)")
    add_config_args(p)
    add_cluster_args(p)
    p.add_argument("--resume", metavar="RUN_ID|RUN_DIR", default=None,
                   help="continue an interrupted run from its last finished round (its MLflow run id with the same "
                        "--tracking-uri, or its run folder); --set only for resources.* and timeout keys")
    return p


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from orchestrator.store import tracking
    from orchestrator.run.experiment import Experiment
    from orchestrator.report.summary import round_table

    if args.resume is not None:
        from orchestrator.run import resume
        from orchestrator.errors import SvgapError

        if args.config is not None:
            raise SvgapError(f"--resume takes the config from the run folder; drop the config file {args.config}")
        cfg, point, uri = resume.load(args.resume, args.overrides, args.tracking_uri)
        result = Experiment(cfg, address=args.address, tracking_uri=uri, experiment_name=args.experiment,
                            resume=point).run()
    else:
        cfg = load_config(args)
        result = Experiment(cfg, address=args.address, tracking_uri=args.tracking_uri,
                            experiment_name=args.experiment).run()
    console = Console(width=None if sys.stdout.isatty() else 160)
    console.print(round_table(result.records))
    if result.stop_reason:
        console.print(f"stopped early: {result.stop_reason}")
    if result.fits:
        t_fit = max(result.fits)
        last = result.fits[t_fit]
        if last.get("rate") is not None:
            console.print(f"gap fit after round {t_fit} ({last['fitted_on']['quantity']} NLL): rate {last['rate']:.3f}, "
                          f"U_s,inf {last['U_s_inf']:.3f}, G_inf {last['G_inf']:.3f}, R2(U_s) {last['r2']['U_s']:.3f} "
                          f"-- {last['verdict']}; more: svgap report {result.run_id}")
        else:
            console.print(f"gap fit after round {t_fit}: {last['verdict']}")
    console.print(f"MLflow run id: {result.run_id}")
    console.print(f"round files: {result.out_dir}")
    console.print(f"to look at it: {tracking.ui_hint(result.tracking_uri)}")
    return 0
