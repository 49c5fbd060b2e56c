"""`svgap` command line: thin. Each subcommand lives in orchestrator/commands/<name>.py with
`add_parser(subparsers)` and `run(args) -> int`; this file only wires them, sets up logging (`--log-level`,
`--quiet`, before or after the command's name: orchestrator/log.py) and turns SvgapError into one line and exit
code 2."""
from __future__ import annotations

import argparse
import importlib
import logging
import sys

from orchestrator import redact
from orchestrator.errors import SvgapError
from orchestrator.log import LEVELS, setup_logging

log = logging.getLogger("orchestrator.cli")  # also when run as __main__
COMMANDS = ["run", "base_model", "fit", "plan", "report", "allocate", "sweep", "submit", "jobs", "logs", "stop", "sync", "model"]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse's own errors: one line, exit 2
        sys.stderr.write(f"svgap: error: {message}\n")
        sys.exit(2)


def add_log_args(p: argparse.ArgumentParser, top: bool) -> None:
    """--log-level and --quiet on the top parser and on each command (a command's own copy never overrides the
    top one with its default)."""
    keep = {} if top else {"default": argparse.SUPPRESS}
    p.add_argument("--log-level", type=str.upper, choices=LEVELS, **({"default": "INFO"} if top else keep),
                   help="what the console shows: DEBUG, INFO (default), WARNING or ERROR")
    p.add_argument("--quiet", action="store_true", **({"default": False} if top else keep),
                   help="warnings and errors only on the console (a run's log.jsonl keeps its progress)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="svgap", description="Self-improvement experiments explained by the solver-verifier gap.")
    add_log_args(parser, top=True)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name in COMMANDS:
        try:
            mod = importlib.import_module(f"orchestrator.commands.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"orchestrator.commands.{name}":
                continue  # command not built yet
            raise
        p = mod.add_parser(sub)
        add_log_args(p, top=False)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    redact.remember(getattr(args, "tracking_uri", None))  # its password is masked in everything printed below
    redact.remember_env()
    setup_logging(args.log_level, args.quiet)
    log.debug(f"{args.command}: " + ", ".join(f"{k}={v!r}" for k, v in sorted(vars(args).items()) if k[0] != "_"))
    try:
        with redact.streams():  # every print of the command passes the one redaction too
            return int(args._run(args) or 0)
    except SvgapError as e:
        sys.stderr.write(f"svgap: error: {redact.text(str(e))}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("svgap: interrupted\n")
        return 130
    except Exception:  # a bug: keep the traceback, but never with a credential in it
        import traceback

        sys.stderr.write(redact.text(traceback.format_exc()))
        return 1


if __name__ == "__main__":
    sys.exit(main())
