"""GSM8K: grade-school word problems; the solution's last line is '#### <number>'.

The reference solution loses its calculator annotations (<<48/2=24>>) before it is training text; a candidate's
answer is what workloads/answers.py extracts (its last '####' first, GSM8K's usual flexible extraction), and is checked
against the reference's by math-verify.
"""
from __future__ import annotations

import re

from workloads import answers
from workloads.jsonl_math import MathFileWorkload

_CALC = re.compile(r"<<[^>]*>>")


class GSM8KWorkload(MathFileWorkload):
    name = "gsm8k"
    fields = ("question", "answer")
    kind = "gsm8k"

    def clean_solution(self, solution: str) -> str:
        return _CALC.sub("", solution).strip()

    def final_answer(self, solution: str) -> str | None:
        return answers.extract(solution)  # '####', else \boxed, 'the answer is', the last number (answers.py)
