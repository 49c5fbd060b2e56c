"""Verification colocated on the generation actors (resources.colocate_verification): the role table's `joins`
puts the verification role's work on the generation pool's own actors -- one model copy, no pool of its own, no
transfer -- and the round's numbers are those of separate pools. Real local Ray, real sqlite MLflow, the shipped
tiny model."""
from __future__ import annotations

import pytest

from orchestrator import config
from orchestrator.roles.roles import PlacementPlan
from orchestrator.run.experiment import Experiment
from orchestrator.studies.placement import trial_bundles


def tiny(tmp_path, base_model_dir, name, *extra) -> list[str]:
    return ["workload.train_prompts=16", "workload.heldout_prompts=16", "generation.n=4", "rounds=1",
            "training.epochs=1", f"tracking.out_dir={tmp_path / name}", f"model.path={base_model_dir}", *extra]


def test_colocated_verification_starts_no_pool_and_asks_no_cpus():
    cfg = config.load(None, ["resources.colocate_verification=true", "resources.generation.cpus=1"])
    plan = PlacementPlan.build(cfg, {"CPU": 8.0})
    assert plan.names() == ["generation", "verification", "training"]
    assert [p.name for p in plan.started()] == ["generation", "training"] and plan["verification"].on == "generation"
    assert plan.requested() == {"CPU": 2.5, "GPU": 0.0}
    assert "verification" not in trial_bundles(cfg, {"CPU": 8.0}).roles
    assert PlacementPlan.build(config.load(None, []), {"CPU": 8.0})["verification"].on is None  # off by default


@pytest.mark.slow
def test_colocated_round_scores_like_separate_pools(local_ray, base_model_dir, tmp_path, tracking_uri, said):
    records = {}
    for name, extra in (("separate", []), ("joined", ["resources.colocate_verification=true"])):
        cfg = config.load(None, tiny(tmp_path, base_model_dir, name, *extra))
        records[name] = Experiment(cfg, tracking_uri=tracking_uri).run().records
    joined, separate = records["joined"], records["separate"]
    assert joined[0].counts["scored/generation"] == joined[0].counts["candidates"] == 16 * 4
    assert "scored/verification" not in joined[0].counts
    assert "starting pools: generation x2, training x1" in said
    for a, b in zip(joined, separate):  # same seeds, same candidates: the same numbers (round 0 and round 1)
        for key in ("U_s", "U_v", "acc_s", "share_passing", "heldout_acc"):
            assert a.metrics[key] == pytest.approx(b.metrics[key], rel=1e-5, abs=1e-6), key
