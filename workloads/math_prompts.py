"""Prompt wording of the math workloads (solve, TF and QE verification) and answer checking by math-verify.

TF and QE follow the paper's two self-verification modes (docs/theory.md §1): TF asks whether the proposed
solution is correct and reads s = p(True) / (p(True) + p(False)) from the next token; QE asks for a grade from 1 to
5 and reads s = E[grade - 1] / 4. With a chat template the question is the user message and the answer word opens
the assistant's turn ("True", "3"); without one the text ends in a cue ("Judgment:", "Grade:") and the word
follows a space (" True", " 3") -- the engine reads multi-token words where they first differ.
(The wording is ours; the paper prints no prompt text we could copy.)
"""
from __future__ import annotations

import threading

from workloads.base import QEQuery, TFQuery

SOLVE = {
    ("gsm8k", True): "Solve the following math problem step by step. Write the final answer as a number on the "
                     "last line, after '#### '.\n\n{text}",
    ("gsm8k", False): "Question: {text}\nAnswer (step by step, the final number after '#### '):",
    ("math", True): "Solve the following problem step by step. Put the final answer in \\boxed{{}}.\n\n{text}",
    ("math", False): "Problem: {text}\nSolution (the final answer in \\boxed{{}}):",
}
TF_TEXT = ("Below is a math problem and a proposed solution.\n\nProblem: {problem}\n\nProposed solution: "
           "{response}\n\nIs the proposed solution correct? Answer True or False.")
QE_TEXT = ("Below is a math problem and a proposed solution.\n\nProblem: {problem}\n\nProposed solution: "
           "{response}\n\nGrade the proposed solution from 1 (certainly wrong) to 5 (certainly correct). "
           "Answer with a single digit.")
TF_CUE, QE_CUE = "\nJudgment:", "\nGrade:"
GRADES = ("1", "2", "3", "4", "5")


def solve(kind: str, text: str, chat: bool) -> str:
    return SOLVE[(kind, chat)].format(text=text)


def tf_query(problem: str, response: str, chat: bool) -> TFQuery:
    text = TF_TEXT.format(problem=problem, response=response.strip())
    if chat:
        return TFQuery(segments=(text,), true_token="True", false_token="False")
    return TFQuery(segments=(text + TF_CUE,), true_token=" True", false_token=" False")


def qe_query(problem: str, response: str, chat: bool) -> QEQuery:
    text = QE_TEXT.format(problem=problem, response=response.strip())
    if chat:
        return QEQuery(text=text, grade_tokens=GRADES)
    return QEQuery(text=text + QE_CUE, grade_tokens=tuple(" " + g for g in GRADES))


# -- answers ---------------------------------------------------------------------------------------------------------
# where the plain wording's next problem would start (SOLVE's plain prompts begin so)
CONTINUATION = {"gsm8k": "\nQuestion:", "math": "\nProblem:"}


def cut_continuation(kind: str, response: str) -> str:
    """The response up to a new problem the model started on its own (the whole response if it did not)."""
    return response.split(CONTINUATION[kind], 1)[0]


def same_answer(gold: str, predicted: str) -> bool:
    """math-verify's judgment: both sides parsed (LaTeX and plain expressions), compared symbolically/numerically.
    Its timeouts use SIGALRM, which only the main thread may set: elsewhere it runs without them."""
    from math_verify import parse, verify

    timeout = 5 if threading.current_thread() is threading.main_thread() else None
    g = parse(f"${gold}$", parsing_timeout=timeout)
    p = parse(f"${predicted}$", parsing_timeout=timeout)
    if not g or not p:
        return False
    return bool(verify(g, p, timeout_seconds=timeout))
