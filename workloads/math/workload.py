"""MATH: competition problems whose solution puts the final answer in \\boxed{}.

A candidate's answer is its last \\boxed{...}; math-verify compares it with the reference's (LaTeX parsed, equal
as expressions, so \\frac{1}{2} and 0.5 agree).
"""
from __future__ import annotations

from workloads import answers
from workloads.jsonl_math import MathFileWorkload


class MATHWorkload(MathFileWorkload):
    name = "math"
    fields = ("problem", "solution")
    kind = "math"

    def final_answer(self, solution: str) -> str | None:
        return answers.last_boxed(solution)
