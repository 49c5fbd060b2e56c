"""docs/configuration.md is written from the models: it is current, and it names every key."""
from __future__ import annotations

from orchestrator.config import ExperimentConfig, flatten, to_dict
from orchestrator.config.reference import PAGE, REGENERATE, render


def test_configuration_page_is_current():
    assert PAGE.is_file() and PAGE.read_text() == render(), f"docs/configuration.md is stale: run {REGENERATE}"


def test_every_key_is_on_the_page():
    page = render()
    keys = [k for k in flatten(to_dict(ExperimentConfig())) if not k.startswith("workload.options.")]
    missing = [k for k in keys if f"| `{k}` |" not in page]
    assert not missing, missing
    assert "| `digits` |" in page and "| `path` |" in page  # the built-in workloads' options too
