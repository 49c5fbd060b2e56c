"""Lost actors on a real local Ray: an actor killed mid-stage is replaced on its bundle, re-synced to the current
model version, and only its shard is sent again; too many losses stop the stage with a message naming the role,
the actor, the node and the cause. The kills are real (SIGKILL, ray.kill), see fault_helpers.py."""
from __future__ import annotations

import os
import sys

import pytest
import ray

from orchestrator.config import PoolResources
from orchestrator.pools.group import ActorGroup, PoolSpec, StageError

HERE = os.path.dirname(__file__)
sys.path.insert(0, HERE)
from fault_helpers import FragileEchoWorker, SWITCH, start_switch  # noqa: E402


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
    assert SWITCH  # the switch is killed by the fixture
