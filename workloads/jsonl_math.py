"""Math word problems from local JSONL files (the GSM8K and MATH workloads share this; each names its fields).

Splits: every problem has a stable id (the line's `id`/`unique_id` field, else a hash of its text); a seeded hash
of (split_seed, id) puts it in train, held-out or external, so the split never depends on the file's order and the
three never share a problem. A separate held-out or external file replaces that share of the main file.
The reference answer (external data) is the file's own solution; answers are checked by math-verify.
"""
from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, model_validator

from orchestrator.errors import SvgapError
from orchestrator.config.errors import bad
from orchestrator.config.fields import Num, Range, Section
from workloads import math_prompts
from workloads.base import Problem, QEQuery, Split, TFQuery


class MathFileOptions(Section):
    """`workload.options` of gsm8k and math."""
    path: str = Field("", description="JSONL, one problem a line (required)")
    heldout_path: str | None = Field(None, description="held-out problems from their own file instead of a share "
                                                       "of `path`")
    external_path: str | None = Field(None, description="external-data problems (with reference solutions) from "
                                                        "their own file")
    heldout_fraction: Annotated[Num, Range(0.0, 0.95)] = Field(0.2, description="problems held out")
    external_fraction: Annotated[Num, Range(0.0, 0.95)] = Field(0.1, description="problems kept for external data")
    split_seed: int = Field(0, description="seeds which split a problem falls in")
    prompt_format: Literal["auto", "chat", "plain"] = Field(
        "auto", description="auto: chat wording when the model reads prompts through its chat template, plain "
                            "completion wording otherwise")

    @model_validator(mode="after")
    def _consistent(self) -> "MathFileOptions":
        if not self.path:
            raise bad("required (a local JSONL file of problems)", "path")
        own = (0.0 if self.heldout_path else self.heldout_fraction) + \
              (0.0 if self.external_path else self.external_fraction)
        if own >= 1.0:
            raise bad(f"with external_fraction it takes the whole file ({own:g}); leave some problems for training",
                      "heldout_fraction")
        return self


def read_jsonl(path: str | Path, fields: tuple[str, str], key: str) -> list[dict]:
    """The lines of a JSONL file as dicts that have both `fields`; errors name the file and line."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise SvgapError(f"{key}: no file at {p}")
    rows = []
    with p.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError:
                raise SvgapError(f"{key}: {p} line {n} is not JSON") from None
            if not isinstance(row, dict) or any(not isinstance(row.get(k), str) for k in fields):
                raise SvgapError(f"{key}: {p} line {n} lacks the text fields {' and '.join(fields)}")
            rows.append(row)
    if not rows:
        raise SvgapError(f"{key}: {p} holds no problems")
    return rows


def split_unit(*parts: object) -> float:
    """A fixed number in [0, 1) per (seed, problem): which split a problem falls in, whatever the file order."""
    h = hashlib.blake2b("|".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(h, "little") / 2.0 ** 64


class MathFileWorkload:
    """Base of the file-backed math workloads; subclasses say which fields hold the problem and the solution,
    how a final answer is found in a solution, and how a problem is put to the solver."""
    Options = MathFileOptions
    name = "jsonl_math"
    fields: tuple[str, str] = ("question", "answer")
    kind = "gsm8k"  # math_prompts wording

    def __init__(self, options: MathFileOptions | None = None) -> None:
        self.options = options or MathFileOptions.model_construct()  # no path: refused just below
        if not self.options.path:
            raise SvgapError("workload.options.path: required (a local JSONL file of problems)")
        self.chat = self.options.prompt_format == "chat"
        self._rows: dict[Split, list[tuple[str, str, str]]] = {"train": [], "heldout": [], "external": []}
        self._load()

    # -- data -------------------------------------------------------------------------------------------------------
    def _problem_id(self, row: dict) -> str:
        for k in ("id", "unique_id", "idx"):
            if row.get(k) is not None:
                return f"{self.name}-{row[k]}"
        return f"{self.name}-" + hashlib.blake2b(row[self.fields[0]].encode(), digest_size=6).hexdigest()

    def _entries(self, path: str, key: str) -> list[tuple[str, str, str]]:
        q, a = self.fields
        return [(self._problem_id(r), r[q].strip(), self.clean_solution(r[a])) for r in read_jsonl(path, self.fields, key)]

    def _load(self) -> None:
        o = self.options
        main = self._entries(o.path, "workload.options.path")
        ho = o.heldout_fraction if not o.heldout_path else 0.0
        ex = o.external_fraction if not o.external_path else 0.0
        for e in main:
            u = split_unit(o.split_seed, e[0])
            self._rows["heldout" if u < ho else "external" if u < ho + ex else "train"].append(e)
        if o.heldout_path:
            self._rows["heldout"] = self._entries(o.heldout_path, "workload.options.heldout_path")
        if o.external_path:
            self._rows["external"] = self._entries(o.external_path, "workload.options.external_path")
        self._text = {pid: text for rows in self._rows.values() for pid, text, _ in rows}
        seen: dict[str, str] = {}
        for split, rows in self._rows.items():
            for pid, _, _ in rows:
                if seen.setdefault(pid, split) != split:
                    raise SvgapError(f"workload.options: problem {pid} is in both the {seen[pid]} and the {split} "
                                     f"files; the splits must not share a problem")

    def use_chat_template(self, chat: bool) -> None:
        """Told by the controller whether the model reads prompts through its chat template (prompt_format auto)."""
        if self.options.prompt_format == "auto":
            self.chat = bool(chat)

    def problems(self, split: Split, n: int, seed: int) -> list[Problem]:
        """n problems of the split drawn without replacement by `seed` (all of them, shuffled, when it has fewer)."""
        pool = self._rows[split]
        if not pool:
            raise SvgapError(f"workload {self.name}: the {split} split of {self.options.path} is empty "
                             f"(set workload.options.{split}_fraction or {split}_path)")
        picked = random.Random(seed).sample(pool, min(n, len(pool)))
        return [Problem(pid, self.solve_prompt(text), solution) for pid, text, solution in picked]

    def problem_text(self, problem: Problem) -> str:
        return self._text[problem.id]

    # -- what subclasses define -------------------------------------------------------------------------------------
    def clean_solution(self, solution: str) -> str:
        return solution.strip()

    def final_answer(self, solution: str) -> str | None:
        raise NotImplementedError

    def solve_prompt(self, text: str) -> str:
        return math_prompts.solve(self.kind, text, self.chat)

    def answer_part(self, response: str) -> str:
        """What of a candidate answers the problem: a plain (completion) model often goes on with a new
        'Question:' / 'Problem:' of its own; that tail is neither checked nor judged."""
        return math_prompts.cut_continuation(self.kind, response)

    # -- the protocol -----------------------------------------------------------------------------------------------
    def check(self, problem: Problem, response: str) -> bool:
        gold, pred = self.final_answer(problem.answer), self.final_answer(self.answer_part(response))
        return gold is not None and pred is not None and math_prompts.same_answer(gold, pred)

    def tf_query(self, problem: Problem, response: str) -> TFQuery:
        return math_prompts.tf_query(self.problem_text(problem), self.answer_part(response), self.chat)

    def qe_query(self, problem: Problem, response: str) -> QEQuery:
        return math_prompts.qe_query(self.problem_text(problem), self.answer_part(response), self.chat)

    def reference(self, problem: Problem) -> str:
        return problem.answer
