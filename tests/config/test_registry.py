"""One registry shape: study kinds are looked up like engines, trainers and workloads (built-ins, entry points)."""
from __future__ import annotations

import pytest

from orchestrator.cli import build_parser
from orchestrator.config import ConfigError
from orchestrator.config.registry import ENGINES, STUDIES, TRAINERS, WORKLOADS, Registry, grid_studies, study_summary
from orchestrator.studies.allocation import AllocationSummary
from orchestrator.studies.table import SweepSummary


def test_every_kind_of_name_has_the_same_registry_shape():
    assert all(isinstance(r, Registry) for r in (ENGINES, TRAINERS, WORKLOADS, STUDIES))
    assert STUDIES.names() == ("sweep", "scaling", "allocation")


def test_a_study_kind_names_its_table_maker():
    scaling = study_summary("scaling")
    assert isinstance(scaling, SweepSummary) and scaling.kind == "scaling"
    assert isinstance(study_summary("allocation"), AllocationSummary) and study_summary("allocation").kind == "allocation"
    with pytest.raises(ConfigError, match=r"--kind: 'grid' is not a study kind \(choose one of sweep, scaling, allocation"):
        study_summary("grid")


def test_a_plugin_study_kind_is_a_sweep_kind(tmp_path, monkeypatch):
    pkg = tmp_path / "mystudy"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "mod.py").write_text("from orchestrator.studies.table import SweepSummary\n"
                                "class Ablation(SweepSummary):\n    tag = 'ablation'\n")
    dist = tmp_path / "mystudy-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: mystudy\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[svgap.studies]\nablation = mystudy.mod:Ablation\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert grid_studies() == ("sweep", "scaling", "ablation")
    made = study_summary("ablation")
    assert type(made).__name__ == "Ablation" and made.kind == "ablation"
    args = build_parser().parse_args(["sweep", "--grid", "generation.n=2,4", "--kind", "ablation"])
    assert args.kind == "ablation"
