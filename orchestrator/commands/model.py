"""`svgap model import FILE.gguf|smollm2 [--out DIR] [--dtype float32|bfloat16]`: a llama.cpp GGUF file (or a
model svgap knows by name, from its installed package) as a standard HF folder for `model.path`. Prints the
folder; a second call with the same file reuses it."""
from __future__ import annotations

import argparse
import logging

from orchestrator.models import gguf_import, packaged

log = logging.getLogger(__name__)


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("model", help="import a real pretrained model (GGUF) as an HF folder", description=__doc__)
    verbs = p.add_subparsers(dest="verb", required=True)  # the parser class (one-line errors) is inherited
    imp = verbs.add_parser("import", help="GGUF file (or a packaged model's name: smollm2) -> HF folder")
    imp.add_argument("source", help="a .gguf file, or one of: " + ", ".join(packaged.PACKAGED))
    imp.add_argument("--out", default=None, help="the folder to write (default: ~/.cache/svgap/models/<name>)")
    imp.add_argument("--dtype", default="float32", choices=gguf_import.DTYPES, help="weights' dtype on disk")
    return p


def run(args: argparse.Namespace) -> int:
    src = packaged.resolve_source(args.source)
    out = args.out or packaged.default_out(args.source)
    log.info("importing %s -> %s (%s)", src, out, args.dtype)
    folder, meta, reused = gguf_import.import_gguf(src, out, args.dtype)
    log.info("%s: %s, %s parameters, chat template: %s", "reused" if reused else "imported",
             meta.get("architecture"), f"{meta.get('parameters', 0):,}", meta.get("chat_template"))
    print(folder)
    return 0
