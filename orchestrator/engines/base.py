"""The inference-engine interface and what an engine returns (plain data, so it crosses Ray process boundaries
unchanged)."""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

from workloads.base import QEQuery, TFQuery


@dataclass
class Sample:
    """One sampled candidate. `logprobs[k]` = log pi(token_k | prompt, tokens_<k) at temperature 1 (the policy
    itself, not the tempered sampling distribution), so sum(-logprobs) is the uncertainty U(y|x) of docs/theory.md §1."""
    token_ids: list[int]  # response tokens, including EOS when it was produced
    text: str  # decoded response, special tokens removed
    logprobs: list[float]
    finished: bool  # ended with EOS within max_new_tokens

    @property
    def nll(self) -> float:
        return -float(sum(self.logprobs))

    @property
    def length(self) -> int:
        return len(self.token_ids)


@dataclass
class Scored:
    """Teacher-forced uncertainty of a (prompt, response) pair."""
    nll: float
    token_nll: list[float]
    length: int


def check_sample_args(prompts: list[str], seeds: list[int], n: int, temperature: float, max_new_tokens: int) -> None:
    """The arguments every engine's `sample` refuses alike (one seed per prompt fixes that prompt's candidates)."""
    if len(seeds) != len(prompts):
        raise ValueError(f"sample needs one seed per prompt ({len(prompts)} prompts, {len(seeds)} seeds)")
    if n < 1 or max_new_tokens < 1 or not temperature > 0:
        raise ValueError(f"sample needs n >= 1, max_new_tokens >= 1, temperature > 0 "
                         f"(got {n}, {max_new_tokens}, {temperature})")


class InferenceEngine(ABC):
    """What a generation or verification actor needs from its engine (HF is the reference, vLLM the fast one).

    An engine holds one model version at a time: 0 is π_0, `load_weights` moves it to the version of the update
    (a LoRA adapter or full weights). Work methods take no version: the actor checks it (`require`) first."""

    version: int = 0

    @abstractmethod
    def sample(self, prompts: list[str], n: int, temperature: float, max_new_tokens: int, seeds: list[int],
               batch_size: int = 512) -> list[list[Sample]]:
        """n candidates per prompt with the policy's own (temperature-1) logprobs of every sampled token."""

    @abstractmethod
    def score(self, prompts: list[str], responses: list[list[int]], batch_size: int = 512) -> list[Scored]:
        """Teacher-forced uncertainty of each (prompt, response token ids) pair."""

    @abstractmethod
    def tf_score(self, queries: list[TFQuery], batch_size: int = 512) -> list[float]:
        """s = prod_k p_k(True) / (p_k(True) + p_k(False)) over the query's judgments."""

    @abstractmethod
    def qe_score(self, queries: list[QEQuery], batch_size: int = 512) -> list[float]:
        """s = E[grade] / max grade from the next-token distribution restricted to the grade tokens."""

    @abstractmethod
    def load_weights(self, update) -> int:
        """Hold the model version of `update` (AdapterUpdate | FullUpdate); returns that version."""

    @abstractmethod
    def base_fingerprint(self) -> str:
        """weights.base_fingerprint of π_0 as this engine loaded it: equal across engines of the same weights."""

    def verify(self, queries: list, method: str, responses: list[tuple[str, list[int]]] | None,
               batch_size: int = 512) -> tuple[list[float], list[Scored] | None]:
        """The verification stage's work on one shard: verifier scores and, when `responses` is given, their
        teacher-forced uncertainty. Engines that can do both in one pass override this."""
        scores = self.tf_score(queries, batch_size) if method == "tf" else self.qe_score(queries, batch_size)
        scored = (self.score([p for p, _ in responses], [list(r) for _, r in responses], batch_size)
                  if responses is not None else None)
        return scores, scored

    def shutdown(self) -> None:
        """Free what outlives the Python object (engine processes); safe to call twice."""
