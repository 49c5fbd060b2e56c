"""`svgap` command line: thin. Each subcommand lives in orchestrator/commands/<name>.py with
`add_parser(subparsers)` and `run(args) -> int`; this file only wires them and turns SvgapError into one line
and exit code 2."""
from __future__ import annotations

import argparse
import importlib
import sys

from orchestrator import redact
from orchestrator.errors import SvgapError

COMMANDS = ["run", "base_model", "fit", "plan", "report", "allocate", "sweep", "submit", "jobs", "logs", "stop", "sync", "model"]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse's own errors: one line, exit 2
        sys.stderr.write(f"svgap: error: {message}\n")
        sys.exit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="svgap", description="Self-improvement experiments explained by the solver-verifier gap.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name in COMMANDS:
        try:
            mod = importlib.import_module(f"orchestrator.commands.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"orchestrator.commands.{name}":
                continue  # command not built yet
            raise
        p = mod.add_parser(sub)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    redact.remember(getattr(args, "tracking_uri", None))  # its password is masked in everything printed below
    redact.remember_env()
    try:
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
