"""Lost actors on a real local Ray: an actor killed mid-stage is replaced on its bundle, re-synced to the current
model version, and only its shard is sent again; too many losses stop the stage with a message naming the role,
the actor, the node and the cause. The kills are real (SIGKILL, ray.kill), see fault_helpers.py."""
from __future__ import annotations

import os
import sys

import pytest
import ray

from orchestrator.config import PoolResources
from orchestrator.roles.group import ActorGroup, PoolSpec, StageError

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, HERE)
from fault_helpers import FragileEchoWorker, start_switch  # noqa: E402


def spec(actors=2, retries=3):
    return PoolSpec("generation", PoolResources(actors=actors, cpus=0.25), "PACK", 60.0, retries)


@pytest.fixture
def switch(local_ray):
    made = []

    def make(plan):
        made.append(start_switch(plan))
        ray.get(made[-1].fired_faults.remote())
        return made[-1]
    yield make
    for s in made:
        ray.kill(s)


def test_lost_actor_is_replaced_resynced_and_only_its_shard_retried(switch):
    sw = switch({"echo.double": 1})
    g = ActorGroup(spec(), FragileEchoWorker, "w")
    try:
        assert g.call_all("sync", "load_weights", 3) == [3, 3]  # remembered: a replacement loads it too
        first = list(g.actors)
        out = g.map_shards("generate", "double", list(range(7)), 3)
        assert [v for _, v in out] == [2 * x for x in range(7)]
        assert ray.get(sw.fired_faults.remote()) == ["echo.double"]
        assert (g.faults.retried, g.faults.replaced) == (1, 1)
        assert sum(a is not b for a, b in zip(first, g.actors)) == 1  # one actor replaced, the other kept
        assert g.call_all("check", "load_weights", 3) == [3, 3]
        assert "SIGKILL" in g.faults.events[0] or "died" in g.faults.events[0].lower(), g.faults.events
    finally:
        g.shutdown()


def test_too_many_losses_stop_naming_role_actor_node_and_cause(switch):
    switch({"echo.double": 5})
    g = ActorGroup(spec(actors=1, retries=1), FragileEchoWorker, "w")
    try:
        with pytest.raises(StageError) as e:
            g.map_shards("verify", "double", [1, 2], 0)
        msg = str(e.value)
        assert "stage 'verify' lost generation[0]" in msg, msg
        assert "(node " in msg and "2 times (resources.retries=1)" in msg and "last cause: ActorDiedError" in msg, msg
        assert g.faults.replaced == 1  # the first loss was survived, the second stopped the stage
    finally:
        g.shutdown()


def tiny_cfg(tmp_path, base_model_dir, *extra):
    from orchestrator import config

    return config.load(None, ["workload.train_prompts=12", "workload.heldout_prompts=8", "generation.n=2",
                              "rounds=1", "training.epochs=1", f"tracking.out_dir={tmp_path / 'runs'}",
                              f"model.path={base_model_dir}", "fit.online=false", *extra])


@pytest.mark.slow
def test_run_survives_lost_generation_verification_and_training_actors(switch, base_model_dir, tmp_path, tracking_uri):
    """Round 0: ray.kill of a generation actor while it samples, SIGKILL of the verification actor while it verifies
    and of the training actor while it trains. The run completes, the round's record counts the three retried
    calls, and both rounds' numbers equal those of a run without faults (each prompt's seed fixes its candidates;
    the new trainer starts from the same π_0 and seed)."""
    import json

    from fault_helpers import KilledGenerationWorker, OOMTrainingWorker, OOMVerificationWorker
    from orchestrator.store import tracking
    from orchestrator.run.experiment import Experiment

    uri = tracking_uri
    clean = Experiment(tiny_cfg(tmp_path, base_model_dir), tracking_uri=uri).run()
    sw = switch({"generation.sample": 1, "verification.verify": 1, "training.train.0": 1})
    res = Experiment(tiny_cfg(tmp_path, base_model_dir), tracking_uri=uri,
                     worker_classes={"generation": KilledGenerationWorker, "verification": OOMVerificationWorker,
                                     "training": OOMTrainingWorker}).run()
    assert sorted(ray.get(sw.fired_faults.remote())) == ["generation.sample", "training.train.0",
                                                         "verification.verify"]
    rec0 = json.loads((res.out_dir / "rounds" / "round_000.json").read_text())
    rec1 = json.loads((res.out_dir / "rounds" / "round_001.json").read_text())
    # round 0: one sample shard, one verify shard, the training call: each sent once more, on a new actor
    assert rec0["counts"]["retried_shards"] == 3 and rec0["counts"]["replaced_actors"] == 3, rec0["counts"]
    assert rec1["counts"]["retried_shards"] == 0, rec1["counts"]
    from orchestrator.store.records import ROUND_METRICS

    for t in (0, 1):  # nothing lost, nothing counted twice: the same numbers as the clean run (timings aside)
        got, want = ({k: r.records[t].metrics[k] for k in ROUND_METRICS + ("U_s_sampled",)} for r in (res, clean))
        assert got == want, (t, {k: (got[k], want[k]) for k in got if got[k] != want[k]})
    hist = tracking.metric_series(res.run_id, ["U_s"], uri)["U_s"]
    assert sorted(hist) == [0, 1]
    assert tracking.get_run(res.run_id, uri).info.status == "FINISHED"
