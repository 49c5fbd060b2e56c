"""Real faults for the lost-actor tests (importable by Ray workers through PYTHONPATH): actors that are killed -- by
`ray.kill` from another actor, or SIGKILL as Ray's OOM killer does -- in the middle of their work. Nothing is mocked:
the actor process really dies and Ray reports it as it would in production.

A named FaultSwitch actor holds the plan (which fault fires how many times), so a replacement actor started by the
group does not die again unless the plan says so.
"""
from __future__ import annotations

import os
import signal
import time

import ray

SWITCH = "svgap-fault-switch"


class FaultSwitch:
    """plan: {fault name: how many times it fires}."""

    def __init__(self, plan: dict[str, int]) -> None:
        self.left = dict(plan)
        self.fired: list[str] = []

    def fire(self, key: str) -> bool:
        if self.left.get(key, 0) > 0:
            self.left[key] -= 1
            self.fired.append(key)
            return True
        return False

    def kill(self, handle) -> bool:
        ray.kill(handle, no_restart=True)
        return True

    def fired_faults(self) -> list[str]:
        return list(self.fired)


def start_switch(plan: dict[str, int]):
    return ray.remote(FaultSwitch).options(name=SWITCH, num_cpus=0).remote(plan)


def fires(key: str) -> bool:
    try:
        switch = ray.get_actor(SWITCH)
    except ValueError:
        return False
    return bool(ray.get(switch.fire.remote(key), timeout=30))


def die_by_sigkill() -> None:
    """What Ray's OOM killer does to a worker process."""
    os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(60)


def die_by_ray_kill() -> None:
    """Another actor calls ray.kill on this one while it works."""
    ray.get_actor(SWITCH).kill.remote(ray.get_runtime_context().current_actor)
    time.sleep(60)


class FragileEchoWorker:
    """A cheap actor for ActorGroup tests: doubles numbers, remembers the model version it was given."""

    def __init__(self, tag: str) -> None:
        self.tag, self.held = tag, 0

    def load_weights(self, version: int) -> int:
        self.held = version
        return version

    def double(self, items: list, version: int) -> list:
        if fires("echo.double"):
            die_by_sigkill()
        if version != self.held:
            raise ValueError(f"holds version {self.held}, asked for {version}")
        return [(self.tag, 2 * x) for x in items]


from orchestrator.roles.generation import GenerationWorker  # noqa: E402
from orchestrator.roles.training import TrainingWorker  # noqa: E402
from orchestrator.roles.verification import VerificationWorker  # noqa: E402


class KilledGenerationWorker(GenerationWorker):
    """`ray.kill` of this generation actor while it samples (plan key generation.sample)."""

    def sample(self, items, version, *args, **kwargs):
        if fires("generation.sample"):
            die_by_ray_kill()
        return super().sample(items, version, *args, **kwargs)


class OOMVerificationWorker(VerificationWorker):
    """SIGKILL of this verification actor while it verifies (plan key verification.verify)."""

    def verify(self, items, version, *args, **kwargs):
        if fires("verification.verify"):
            die_by_sigkill()
        return super().verify(items, version, *args, **kwargs)


class OOMTrainingWorker(TrainingWorker):
    """SIGKILL of the training actor while it trains (plan key training.train)."""

    def train(self, examples, round_t):
        if fires(f"training.train.{round_t}"):
            die_by_sigkill()
        return super().train(examples, round_t)
