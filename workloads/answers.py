"""One answer extractor for free-form model text: the final answer a chat model states, however it states it.

Tried in order, the first that matches wins (the marker an instruction asks for beats incidental numbers):
  1. `#### n`              GSM8K's marker (the last one)
  2. `\\boxed{...}`         MATH's marker (the last one, balanced braces)
  3. "the answer is n"     also "answer: n", "final answer is n", "result is n" (the last such phrase; a number
                           that an operator follows is the start of an expression, not an answer)
  4. the last number       only when the text does not stop mid-expression (a cut-off `9 * 9 = ` is no answer)
Numbers lose thousands commas; a trailing period is not part of them.
"""
from __future__ import annotations

import re

NUMBER = r"-?\d[\d,]*(?:\.\d+)?"
_NUMBER = re.compile(NUMBER)
# the number must end the expression: "answer: 9 * 9 = " states no answer yet
_PHRASE = re.compile(r"(?:final answer|the answer|answer|result)\s*(?:is|:|=)\s*\$?\s*(" + NUMBER + r")(?!\d|[.,]\d|\s*[=+\-*/×÷^])",
                     re.I)
_DANGLING = re.compile(r"[=+\-*/×÷^(]\s*$")


def clean_number(text: str) -> str:
    return text.replace(",", "").rstrip(".")


def after_hashes(text: str) -> str | None:
    """What follows the last '####' (its first line), or None."""
    if "####" not in text:
        return None
    tail = text.rsplit("####", 1)[1].strip().splitlines()
    return clean_number(tail[0].strip()) if tail and tail[0].strip() else None


def last_boxed(text: str) -> str | None:
    """Content of the last \\boxed{...} (balanced braces), or None."""
    start = text.rfind("\\boxed")
    if start < 0:
        return None
    i = text.find("{", start)
    if i < 0:
        return None
    depth = 0
    for j in range(i, len(text)):
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        if depth == 0:
            return text[i + 1:j].strip()
    return None


def stated_answer(text: str) -> str | None:
    """The number of the last 'the answer is n' / 'answer: n' phrase, or None."""
    found = _PHRASE.findall(text)
    return clean_number(found[-1]) if found else None


def last_number(text: str) -> str | None:
    """The last number of a text that does not stop mid-expression, or None."""
    if _DANGLING.search(text):
        return None
    found = _NUMBER.findall(text)
    return clean_number(found[-1]) if found else None


def extract(text: str) -> str | None:
    """The final answer stated in `text` (see the module's order), or None when it states none."""
    for way in (after_hashes, last_boxed, stated_answer, last_number):
        found = way(text)
        if found:
            return found
    return None


def as_int(answer: str | None) -> int | None:
    """An extracted answer as an integer when it is one (12, 12.0, -3), else None."""
    if answer is None:
        return None
    try:
        value = float(answer)
    except ValueError:
        return None
    return int(value) if value.is_integer() else None
