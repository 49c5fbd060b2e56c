"""Every pool actor is a fresh process that imports transformers' model code before it can work; on a 2-core machine a
study pays that for 4 actors per experiment. transformers' generation module imports scikit-learn (for assisted
decoding's ROC threshold) and its loss module imports scipy.optimize (for object-detection matching) whenever they are
installed -- mlflow brings both. svgap uses neither, and they cost ~2 s of CPU per process (measured: an inference
actor's start 6.1-7.0 s -> 4.4-5.0 s). So those two modules are loaded once with both reported absent; every other
check (and later imports) see the real answers.
"""
from __future__ import annotations

import sys

# the transformers modules that test for scikit-learn / scipy at import time, only for features svgap never uses
_MODULES = ("transformers.generation.candidate_generator", "transformers.loss.loss_utils")


def lean_transformers() -> None:
    """Import transformers' generation and loss modules without scikit-learn and scipy. A no-op once they are
    loaded (in a process that imported them already the cost was paid)."""
    if all(m in sys.modules for m in _MODULES):
        return
    try:
        import transformers.utils as tu
    except ImportError:
        return
    if not (hasattr(tu, "is_sklearn_available") and hasattr(tu, "is_scipy_available")):
        return  # another transformers layout: import as it does
    saved = (tu.is_sklearn_available, tu.is_scipy_available)
    tu.is_sklearn_available = tu.is_scipy_available = lambda: False  # type: ignore[assignment]
    try:
        import importlib

        for m in _MODULES:
            try:
                importlib.import_module(m)
            except ImportError:  # another transformers layout: nothing to save, nothing broken
                pass
    finally:
        tu.is_sklearn_available, tu.is_scipy_available = saved
