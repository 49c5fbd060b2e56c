"""Adding a pool through configuration alone: a `judge` section puts a separate verifier model, served by its own
actors, in the verifier's seat (roles/roles.py has its one table entry). Real local Ray, real sqlite MLflow, the
shipped tiny model as the policy and a copy of it in another folder as the judge."""
from __future__ import annotations

import json
import shutil

import pytest

from orchestrator import config
from orchestrator.errors import SvgapError
from orchestrator.roles.roles import PlacementPlan
from orchestrator.run.experiment import Experiment
from orchestrator.studies.placement import trial_bundles


def tiny(tmp_path, base_model_dir, *extra) -> list[str]:
    return ["workload.train_prompts=16", "workload.heldout_prompts=16", "generation.n=4", "rounds=1",
            "training.epochs=1", f"tracking.out_dir={tmp_path / 'runs'}", f"model.path={base_model_dir}", *extra]


def test_judge_section_adds_a_pool_to_the_plan_capacity_and_trial_bundles():
    cfg = config.load(None, ["judge.path=/models/judge", "judge.cpus=0.5", "judge.actors=2"])
    plan = PlacementPlan.build(cfg, {"CPU": 8.0})
    assert plan.names() == ["generation", "verification", "training", "judge"]
    assert plan.requested() == {"CPU": 3.0, "GPU": 0.0} and not plan.shared("training")
    with pytest.raises(SvgapError, match=r"ask for 3 CPU \(generation 2x0.5, verification 1x0.5, training 1x0.5, "
                                         r"judge 2x0.5\) but the cluster has 2"):
        PlacementPlan.build(cfg, {"CPU": 2.0}).check({"CPU": 2.0})
    # on 2.5 CPUs training takes turns on the generation bundles, and the judge still has its own
    shared = PlacementPlan.build(cfg, {"CPU": 2.5})
    assert shared.shared("training") and shared.requested() == {"CPU": 2.5, "GPU": 0.0}
    tb = trial_bundles(cfg, {"CPU": 8.0})
    assert tb.roles["judge"] == [5, 6] and tb.bundles[5] == {"CPU": 0.5}
    # without the section the plan is the three pools the theory needs
    assert PlacementPlan.build(config.load(None, []), {"CPU": 8.0}).names() == ["generation", "verification",
                                                                                 "training"]


def test_judge_config_errors_name_the_key():
    with pytest.raises(SvgapError, match=r"^judge.path: required"):
        config.load(None, ["judge.cpus=0.5"])
    with pytest.raises(SvgapError, match=r"^judge.custom.CPU: not a custom resource name"):
        config.load(None, ["judge.path=/x", "judge.custom={CPU: 1}"])


def test_judge_path_without_a_model_is_one_line(local_ray, base_model_dir, tmp_path, tracking_uri):
    cfg = config.load(None, tiny(tmp_path, base_model_dir, f"judge.path={tmp_path}", "judge.cpus=0.5"))
    with pytest.raises(SvgapError, match=rf"^judge.path: {tmp_path} is not a saved model directory"):
        Experiment(cfg, tracking_uri=tracking_uri).run()


def test_a_judge_pool_from_config_alone_verifies_every_round(local_ray, base_model_dir, tmp_path, tracking_uri, said):
    judge_dir = tmp_path / "judge"
    shutil.copytree(base_model_dir, judge_dir)
    cfg = config.load(None, tiny(tmp_path, base_model_dir, f"judge.path={judge_dir}", "judge.cpus=0.5"))
    result = Experiment(cfg, tracking_uri=tracking_uri).run()
    lines = said

    assert [r.version for r in result.records] == [0, 1]  # round 1: the policy holds π_1, the judge its own model
    for rec in result.records:
        # every candidate was scored by the judge's actors, none by the policy's own verifier
        assert rec.counts["scored/judge"] == rec.counts["candidates"] == 16 * 4
        assert "scored/verification" not in rec.counts
        assert rec.metrics["mem/judge_peak_mb"] > 0
        assert 0.0 <= rec.metrics["share_passing"] <= 1.0
    assert result.records[0].train["examples"] == 16
    assert any(line.startswith("placement judge: [0] node") for line in lines), lines
    assert "starting pools: generation x2, verification x1, training x1, judge x1" in lines
    saved = json.loads((result.out_dir / "rounds" / "round_001.json").read_text())
    assert saved["counts"]["scored/judge"] == 64  # the run folder's record says so too
