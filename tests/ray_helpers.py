"""Plain actor classes for pool tests (importable by Ray workers through PYTHONPATH)."""
import os
import time


class EchoWorker:
    def __init__(self, tag: str) -> None:
        self.tag = tag

    def version(self) -> int:
        return 0

    def pid(self) -> int:
        return os.getpid()

    def double(self, items: list, fail_on=None) -> list:
        if fail_on is not None and fail_on in items:
            raise ValueError(f"cannot double {fail_on}")
        return [(self.tag, 2 * x) for x in items]

    def sleep(self, items: list, seconds: float) -> list:
        time.sleep(seconds)
        return items


from orchestrator.roles.generation import GenerationWorker  # noqa: E402


class FailingGenerationWorker(GenerationWorker):
    """A real generation actor whose sampling raises: the round must fail naming the stage."""

    def sample(self, items, version, *args, **kwargs):
        raise RuntimeError("injected sampling failure")


from orchestrator.roles.verification import VerificationWorker  # noqa: E402


class EngineWorker(GenerationWorker, VerificationWorker):
    """One actor with both inference roles, so engine tests start one (slow-to-start) vLLM engine, not two."""

    def pid(self) -> int:
        return os.getpid()

    def engine_attr(self, name: str, value=None):
        """Read (or, with a value, set) an option of the engine (vLLM: opts[name]) or its counter `verify_tokens`."""
        if name == "verify_tokens":
            return vars(self.backend.verify_tokens).copy()
        if value is not None:
            self.backend.opts[name] = value
        return self.backend.opts[name]


class _Owner:
    """Puts an object in the store (it owns it); killed, the object has no owner any more."""

    def make(self) -> list:
        import ray

        return [ray.put(b"x" * 200_000)]  # in a list: the caller gets the reference, the owner stays this actor

    def ping(self) -> int:
        return 1


class _Reader:
    def read(self, box: list) -> int:
        import ray

        return len(ray.get(box[0], timeout=60))


class ObjectLosingWorker(EchoWorker):
    """The first call anywhere (a flag file says) needs an object whose owner has died: OwnerDiedError, an object
    loss as a node failure or a killed worker causes it. Later calls (on the replacement) work."""

    def __init__(self, tag: str, flag: str) -> None:
        super().__init__(tag)
        self.flag = flag

    def double(self, items: list, fail_on=None) -> list:
        import ray
        from ray.exceptions import RayActorError

        if not os.path.exists(self.flag):
            open(self.flag, "w").close()
            owner = ray.remote(num_cpus=0)(_Owner).remote()
            box = ray.get(owner.make.remote(), timeout=60)
            ray.kill(owner)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:  # until Ray knows the owner is dead
                try:
                    ray.get(owner.ping.remote(), timeout=10)
                except RayActorError:
                    break
            ray.get(ray.remote(num_cpus=0)(_Reader).remote().read.remote(box), timeout=60)  # OwnerDiedError
        return super().double(items, fail_on)
