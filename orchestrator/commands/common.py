"""Arguments and printing shared by commands (thin helpers; no logic of the experiment here)."""
from __future__ import annotations

import argparse

from orchestrator import config


def add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", nargs="?", default=None,
                   help="experiment YAML (default: configs/arithmetic.yaml)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set generation.n=8 (repeatable)")


def load_config(args: argparse.Namespace) -> config.ExperimentConfig:
    return config.load(args.config, args.overrides)
