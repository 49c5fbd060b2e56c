"""The Workload protocol: what a task gives the round loop.

A workload owns its prompts (seeded train / held-out / external sets), its answer checker, its verifier prompt templates
(TF and QE), reference answers from a stronger source (external data) and, optionally, a base model. Everything
crosses process boundaries as plain dataclasses. workloads/README.md shows a complete plug-in.

Texts a workload writes (a problem's prompt, a TF query's first segment, a QE query) open a conversation: the
engines wrap them in the model's chat template when it has one (orchestrator/engines/chat.py); later TF segments
continue the same turn. Verifier words (TF's two words, QE's grades) may be several tokens each: a word's
probability is the product of its tokens' (orchestrator/engines/judge.py).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal, Protocol

Split = Literal["train", "heldout", "external"]


@dataclass(frozen=True)
class Problem:
    """One prompt. `id` is stable across runs (used for seeding and for 'no example used twice')."""
    id: str
    prompt: str
    answer: str  # the reference answer, as response text


@dataclass(frozen=True)
class TFQuery:
    """A TrueFalse verifier query, judged step by step.

    The model reads `segments[0]`, then a judgment is read from its next-token distribution
    (p(true_token) vs p(false_token)); `true_token` is appended, then `segments[1]`, another judgment, and so on.
    s = prod_k p_k(True) / (p_k(True) + p_k(False)) -- the chain rule of "every step is correct".
    A single-judgment template is simply one segment.
    """
    segments: tuple[str, ...]
    true_token: str
    false_token: str


@dataclass(frozen=True)
class QEQuery:
    """A quality-evaluation query: grade g = index into `grade_tokens`; s = E[g] / (len(grade_tokens) - 1)."""
    text: str
    grade_tokens: tuple[str, ...]


class Workload(Protocol):
    """Required: problems, check, tf_query, qe_query, reference. Optional: `Options` (a dataclass, or a config
    Section model, whose fields all have defaults; the workload is built as Class(options)), `base_model` (without
    it the config must set model.path), `use_chat_template(chat: bool)` (told before any text is made whether the
    model reads them through its chat template, for workloads that word their prompts differently),
    `checks_answers = False` (a task whose `check` cannot tell: the rounds then log no verifier ROC-AUC)."""
    name: str

    def problems(self, split: Split, n: int, seed: int) -> list[Problem]:
        """n seeded problems. The three splits never share a problem: "train" feeds the rounds, "heldout" the
        held-out accuracy, "external" the external-data pool (docs/theory.md §5), so external data is never a round's prompt."""

    def check(self, problem: Problem, response: str) -> bool:
        """Is `response` a correct answer to `problem`?"""

    def tf_query(self, problem: Problem, response: str) -> TFQuery: ...

    def qe_query(self, problem: Problem, response: str) -> QEQuery: ...

    def reference(self, problem: Problem) -> str:
        """The stronger source's answer (external data)."""

    def base_model(self, cache_dir: Path, progress: Callable[[str], None] | None = None) -> Path:
        """Optional. Directory of a `save_pretrained` model + tokenizer; built locally and cached by recipe.
        Say what it does with `logging.getLogger(__name__)` (svgap's console and run log show it). `progress` is
        deprecated: svgap no longer passes it; it stays in the signature so plug-ins written with it still fit."""
