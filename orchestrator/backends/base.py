"""What an inference engine returns: plain data, so it crosses Ray process boundaries unchanged."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Sample:
    """One sampled candidate. `logprobs[k]` = log pi(token_k | prompt, tokens_<k) at temperature 1 (the policy
    itself, not the tempered sampling distribution), so sum(-logprobs) is the uncertainty U(y|x) of THEORY §1."""
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
