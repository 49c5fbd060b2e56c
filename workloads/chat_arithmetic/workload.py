"""Arithmetic for chat models: `What is 7 * 8? Answer with just the number.`, answered in free text, the answer
taken by the one extractor (workloads/answers.py) and checked exactly; the verifier judges the equation the
candidate states (`7 * 8 = 54`), which a small instruct model tells apart better than the whole reply (measured:
TF ROC-AUC 0.70 against 0.45-0.50 for wordings that quote the reply, SmolLM2-135M-Instruct, 320 candidates).

Every problem of the space (operands min..max, each operator) gets a fixed split by a seeded hash, so the
train, held-out and external sets never share a problem.
"""
from __future__ import annotations

import random

from orchestrator.errors import SvgapError
from workloads import answers
from workloads.base import Problem, QEQuery, Split, TFQuery
from workloads.jsonl_math import split_unit

from .options import ChatArithmeticOptions

PROMPT = "What is {q}? Answer with just the number."
TF_TEXT = "{q} = {a}\nIs this equation true? Answer True or False."
QE_TEXT = "{q} = {a}\nHow sure are you that this equation is true, from 1 (certainly false) to 5 (certainly true)? " \
          "Answer with a single digit."
GRADES = ("1", "2", "3", "4", "5")


def _value(a: int, op: str, b: int) -> int:
    return a + b if op == "+" else a - b if op == "-" else a * b


class ChatArithmeticWorkload:
    Options = ChatArithmeticOptions
    name = "chat_arithmetic"

    def __init__(self, options: ChatArithmeticOptions | None = None) -> None:
        self.options = o = options or ChatArithmeticOptions()
        self.system_prompt = None if o.system_prompt == "template" else o.system_prompt
        self._splits: dict[str, list[tuple[int, str, int]]] = {"train": [], "heldout": [], "external": []}
        for op in o.ops:
            for a in range(o.min_operand, o.high + 1):
                for b in range(o.min_operand, (a if op == "-" else o.high) + 1):
                    u = split_unit(o.split_seed, a, op, b)
                    split = "heldout" if u < o.heldout_fraction else \
                        "external" if u < o.heldout_fraction + o.external_fraction else "train"
                    self._splits[split].append((a, op, b))

    @staticmethod
    def question(a: int, op: str, b: int) -> str:
        return f"{a} {op} {b}"

    def problems(self, split: Split, n: int, seed: int) -> list[Problem]:
        """n distinct problems of the split drawn by `seed`; more than the split holds is an error naming sizes."""
        pool = self._splits[split]
        if n > len(pool):
            raise SvgapError(f"workload chat_arithmetic: asked for {n} {split} problems, the split holds "
                             f"{len(pool)} (widen workload.options max_operand / ops, or change {split} sizes)")
        picked = random.Random(seed).sample(pool, n)
        return [Problem(f"{a}{op}{b}", PROMPT.format(q=self.question(a, op, b)), str(_value(a, op, b)))
                for a, op, b in picked]

    def _parse(self, problem: Problem) -> tuple[str, int]:
        for op in ("+", "-", "*"):
            left, sep, right = problem.id.partition(op)
            if sep and left.isdigit() and right.isdigit():
                return self.question(int(left), op, int(right)), _value(int(left), op, int(right))
        raise SvgapError(f"not a chat_arithmetic problem id: {problem.id!r}")

    def check(self, problem: Problem, response: str) -> bool:
        return answers.as_int(answers.extract(response)) == int(problem.answer)

    def stated(self, response: str) -> str:
        """What the verifier is shown as the candidate's answer: its extracted number, else its first line."""
        found = answers.extract(response)
        if found is not None:
            return found
        first = (response.strip().splitlines() or [""])[0]
        return first[:60] or "(no answer)"

    def tf_query(self, problem: Problem, response: str) -> TFQuery:
        q, _ = self._parse(problem)
        return TFQuery(segments=(TF_TEXT.format(q=q, a=self.stated(response)),), true_token="True",
                       false_token="False")

    def qe_query(self, problem: Problem, response: str) -> QEQuery:
        q, _ = self._parse(problem)
        return QEQuery(text=QE_TEXT.format(q=q, a=self.stated(response)), grade_tokens=GRADES)

    def reference(self, problem: Problem) -> str:
        q, value = self._parse(problem)
        return f"{q} = {value}"
