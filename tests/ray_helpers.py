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
