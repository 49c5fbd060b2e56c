"""ActorGroup on a real local Ray: placement, sharding order, timeouts and failures named by stage and actor."""
from __future__ import annotations

import os
import sys

import pytest

import ray  # noqa: E402 - a hard dependency: a broken install fails here instead of skipping

from orchestrator.config import PoolResources, ResourcesConfig  # noqa: E402
from orchestrator.errors import SvgapError  # noqa: E402
from orchestrator.roles.group import ActorGroup, PoolSpec, StageError, shard  # noqa: E402
from orchestrator.roles import ray_session  # noqa: E402

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, HERE)
from ray_helpers import EchoWorker  # noqa: E402


def spec(actors=2, cpus=0.5, timeout=30.0, placement="PACK"):
    return PoolSpec("generation", PoolResources(actors=actors, cpus=cpus), placement, timeout)


def test_shard_ranges_cover_in_order():
    assert shard(list(range(10)), 3) == [(0, 4), (4, 8), (8, 10)]
    assert shard(list(range(2)), 4) == [(0, 1), (1, 2)]
    assert shard([], 3) == []


def test_map_shards_keeps_order_and_spreads_over_actors(local_ray):
    g = ActorGroup(spec(), EchoWorker, "w")
    try:
        out = g.map_shards("generate", "double", list(range(7)))
        assert [v for _, v in out] == [2 * x for x in range(7)]
        assert len(set(g.call_all("start", "pid"))) == 2
    finally:
        g.shutdown()


def test_failure_names_stage_and_actor(local_ray):
    g = ActorGroup(spec(), EchoWorker, "w")
    try:
        with pytest.raises(StageError) as e:
            g.map_shards("verify", "double", list(range(6)), fail_on=4)
        msg = str(e.value)
        assert "stage 'verify' failed on generation[1]" in msg and "cannot double 4" in msg
    finally:
        g.shutdown()


def test_timeout_names_stage(local_ray):
    g = ActorGroup(spec(actors=1, timeout=1.0), EchoWorker, "w")
    try:
        with pytest.raises(StageError, match=r"stage 'train' timed out after 1s on generation\[0\]"):
            g.map_shards("train", "sleep", [1], 5.0)
    finally:
        g.shutdown()


def test_capacity_check_names_request(local_ray):
    res = ResourcesConfig(generation=PoolResources(actors=4, cpus=1.0))
    with pytest.raises(SvgapError, match=r"the pools ask for 5 CPU .* but the cluster has 2"):
        ray_session.check_capacity(res)
    ray_session.check_capacity(ResourcesConfig())  # the default fits 2 CPUs
    with pytest.raises(SvgapError, match="GPU"):
        ray_session.check_capacity(ResourcesConfig(training=PoolResources(actors=1, cpus=0.5, gpus=1)))


def test_stale_version_is_refused_by_a_real_generation_actor(local_ray, base_model_dir, default_workload):
    from orchestrator.models.source import ModelSource
    from orchestrator.roles.generation import GenerationWorker
    from orchestrator.roles.worker import WorkerSpec

    source = ModelSource("arithmetic", {}, str(base_model_dir), "unused")
    g = ActorGroup(spec(actors=1, timeout=120.0), GenerationWorker,
                   WorkerSpec("generation", source, "cpu", "float32", 0.5, 1))
    try:
        assert g.call_all("start", "version") == [0]
        items = [(default_workload.problems("train", 1, seed=0)[0].prompt, 7)]
        ok = g.map_shards("generate", "sample", items, 0, 2, 1.0, 8, 64)
        assert len(ok) == 1 and len(ok[0]) == 2
        with pytest.raises(StageError, match=r"stage 'generate' failed on generation\[0\].*holds model version 0 "
                                             r"but was asked to work with version 1; refusing stale weights"):
            g.map_shards("generate", "sample", items, 1, 2, 1.0, 8, 64)
    finally:
        g.shutdown()


def test_engine_that_cannot_start_is_one_error_without_retries(local_ray, tmp_path):
    """An engine whose start fails (here: a model folder without weights) is reported once, with the engine's own
    reason, at the start call -- not as a dead actor that is replaced and fails again."""
    from orchestrator.models.source import ModelSource
    from orchestrator.roles.generation import GenerationWorker
    from orchestrator.roles.worker import WorkerSpec

    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text('{"model_type": "llama"}')
    g = ActorGroup(spec(actors=1, timeout=120.0), GenerationWorker,
                   WorkerSpec("generation", ModelSource("arithmetic", {}, str(broken), "unused"), "cpu", "float32",
                              0.5, 1))
    try:
        with pytest.raises(StageError, match=r"stage 'start' failed on generation\[0\]: .*the generation engine "
                                             r"\(hf\) did not start: \w+"):
            g.call_all("start", "version")
        assert g.faults.replaced == 0 and g.faults.retried == 0
    finally:
        g.shutdown()


def test_an_object_lost_with_its_owner_is_retried_like_a_lost_actor(local_ray, tmp_path, said):
    """OwnerDiedError (an ObjectLostError) inside a shard: the actor is replaced and the shard sent again."""
    from ray_helpers import ObjectLosingWorker

    g = ActorGroup(spec(actors=1, timeout=120.0), ObjectLosingWorker, "w", str(tmp_path / "lost-once"))
    try:
        out = g.map_shards("generate", "double", [1, 2, 3])
        assert [v for _, v in out] == [2, 4, 6]
        assert g.faults.retried == 1 and g.faults.replaced == 1
        assert any("OwnerDiedError" in e for e in g.faults.events), g.faults.events
        assert any("generation[0]" in m and "lost (OwnerDiedError" in m for m in said), said
    finally:
        g.shutdown()


def test_shutdown_reports_what_it_could_not_release(local_ray, caplog):
    """Nothing left: an empty list, no warning. A handle Ray refuses to kill (here: an entry that is no actor, as a
    half-replaced group could hold) is named in a warning and returned, and the rest is still released."""
    import logging

    g = ActorGroup(spec(actors=1), EchoWorker, "w")
    with caplog.at_level(logging.WARNING, logger="orchestrator.roles.group"):
        assert g.shutdown() == [] and not caplog.records
    g = ActorGroup(spec(actors=1), EchoWorker, "w")
    real = g.actors[0]
    g.actors.append(None)
    with caplog.at_level(logging.WARNING, logger="orchestrator.roles.group"):
        left = g.shutdown()
    assert len(left) == 1 and left[0].startswith("generation[1] actor: ValueError"), left
    assert any("shutdown could not release generation[1] actor" in r.getMessage() for r in caplog.records)
    with pytest.raises(ray.exceptions.RayActorError):  # the real actor was still killed
        ray.get(real.pid.remote(), timeout=60)
