"""Typed facades over the one ActorGroup: what a round may ask of each kind of pool, in the theory's words.

SolverPool samples candidates (generation), VerifierPool scores them (verification, or a judge with its own fixed
model), TrainerPool turns picks into the next policy version. Every inference pool can also verify and measure
U(y|x): the round spreads that work over the pools that hold π_t.
"""
from __future__ import annotations

from typing import Any

from orchestrator.roles.calls import Call
from orchestrator.roles.group import ActorGroup


class InferencePool:
    """An inference role's actors. `fixed`: it holds its own model at version 0 for the whole run (a judge)."""

    def __init__(self, group: ActorGroup, fixed: bool = False) -> None:
        self.group, self.fixed = group, fixed

    def __len__(self) -> int:
        return len(self.group)

    @property
    def role(self) -> str:
        return self.group.spec.role

    def held(self, version: int) -> int:
        """The version this pool's actors hold while the policy is at `version`."""
        return 0 if self.fixed else version

    def submit_verify(self, items: list[tuple], version: int, method: str, scored: bool,
                      batch_size: int) -> list[Call]:
        """Start scoring (query, prompt, response ids) items: (score, U or None) per item (see `gather`)."""
        return self.group.submit_shards("verify", items, self.held(version), method, scored, batch_size)

    def submit_uncertainty(self, items: list[tuple[str, list[int]]], version: int, batch_size: int) -> list[Call]:
        """Start measuring U(y|x) of (prompt, response ids) items with the policy (a fixed pool cannot)."""
        return self.group.submit_shards("uncertainty", items, self.held(version), batch_size)

    def gather(self, stage: str, calls: list[Call]) -> list:
        return self.group.gather(stage, calls)

    def load(self, update_ref: Any) -> dict[str, int]:
        """Load a published version (its object-store reference) on every actor: actor name -> version held."""
        return {f"{self.role}[{i}]": v for i, v in enumerate(self.group.call_all("sync", "load_weights", update_ref))}


class SolverPool(InferencePool):
    """The generation role: N candidates per prompt with their per-token logprobs."""

    def submit_sample(self, items: list[tuple[str, int]], version: int, n: int, temperature: float,
                      max_new_tokens: int, batch_size: int) -> list[Call]:
        """Start sampling for (prompt, seed) items: a list of candidates per prompt (see `gather`)."""
        return self.group.submit_shards("sample", items, version, n, temperature, max_new_tokens, batch_size)


class VerifierPool(InferencePool):
    """The verification role (the policy judging itself), or a judge role with its own model."""


class TrainerPool:
    """The training role: a rank group; rank 0 returns the update, as a reference into the object store."""

    def __init__(self, group: ActorGroup, fixed: bool = False) -> None:
        self.group = group

    def __len__(self) -> int:
        return len(self.group)

    def train(self, examples_ref: Any, t: int) -> tuple[Any, tuple[int, int] | None, Any]:
        """Train every rank on the examples; returns rank 0's (stats, (version, bytes) or None, update reference)."""
        (stats, meta), kept = self.group.call_all_kept("train", "train_update", examples_ref, t)[0]
        return stats, meta, kept[0]

    def restore(self, update_ref: Any) -> dict[str, int]:
        """Put a version back into every rank's trainer (resume); a rank replaced later gets it again."""
        return {f"training[{i}]": v for i, v in
                enumerate(self.group.call_all("sync", "restore_update", update_ref))}

    def remember(self, update_ref: Any) -> None:
        """A training rank lost in a later round is replaced and re-trains from this version, not from π_0."""
        self.group.remember("restore_update", update_ref)
