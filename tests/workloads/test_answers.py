"""The one answer extractor (workloads/answers.py) on hand-written forms and on real SmolLM2 outputs."""
import json
from pathlib import Path

import pytest

from workloads import answers

REAL = Path(__file__).resolve().parents[1] / "data" / "smollm2_outputs.jsonl"


@pytest.mark.parametrize("text,want", [
    ("Natalia sold 48 + 24 = 72 clips.\n#### 72", "72"),
    ("#### 1,234", "1234"),
    ("so the total is \\boxed{\\frac{1}{2}}.", "\\frac{1}{2}"),
    ("The answer is 15.", "15"),
    ("I think the final answer is -3, since 2 - 5 = -3", "-3"),
    ("Answer: 42", "42"),
    ("7 - 1 = 6", "6"),
    ("8", "8"),
    ("The result is 12.5 apples", "12.5"),
    ("#### 9\nThe answer is 10", "9"),  # the marker the prompt asked for wins
])
def test_forms(text, want):
    assert answers.extract(text) == want


@pytest.mark.parametrize("text", ["", "No numbers here.", "the final answer: 9 * 9 = ", "First, 3 +"])
def test_no_answer(text):
    assert answers.extract(text) is None


def test_as_int():
    assert answers.as_int("12") == 12 and answers.as_int("12.0") == 12 and answers.as_int("-3") == -3
    assert answers.as_int("12.5") is None and answers.as_int(None) is None and answers.as_int("\\frac{1}{2}") is None


def test_real_outputs_parse():
    """Responses sampled from SmolLM2-135M-Instruct (chat_arithmetic round 0, temperature 0.7), each with the
    answer a reader takes from it (null: it states none): the extractor agrees on every one."""
    rows = [json.loads(line) for line in REAL.read_text().splitlines() if line.strip()]
    assert len(rows) >= 30
    wrong = [(r["response"], r["answer"], answers.extract(r["response"])) for r in rows
             if answers.extract(r["response"]) != r["answer"]]
    assert not wrong, wrong
    assert sum(r["answer"] is not None for r in rows) >= 0.9 * len(rows)
