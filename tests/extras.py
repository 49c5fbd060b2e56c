"""Declared optional dependencies (the vllm, deepspeed extras): `make test` installs them, so a missing one is a
broken install and fails the test, naming the install command -- never a silent skip. A machine that cannot have
an extra opts out explicitly with SVGAP_ALLOW_MISSING_EXTRAS=1 (never set in CI)."""
from __future__ import annotations

import importlib
import os

import pytest

EXTRAS = {"vllm": "vllm", "deepspeed": "deepspeed"}


def require(module: str):
    """The module of a declared extra, or a failure (a skip only under SVGAP_ALLOW_MISSING_EXTRAS=1)."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        extra = EXTRAS.get(module, module)
        how = f"{module} is missing ({e}): pip install -e '.[{extra}]' (make test installs every extra)"
        if os.environ.get("SVGAP_ALLOW_MISSING_EXTRAS") == "1":
            pytest.skip(how, allow_module_level=True)
        pytest.fail(how, pytrace=False)
