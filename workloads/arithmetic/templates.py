"""Text templates of the arithmetic workload: solving, step-by-step TF verifying, QE grading.

The solver sees the operands least significant digit first and answers likewise, zero-padded to digits + 1:

    solve   "805+769="  -> "5741"            (508 + 967 = 1475)

The verifiers see the problem written column by column -- for column k the operand digits a_k, b_k and the
candidate's digit c_k -- the way a person checks an addition. Checking column k then needs only that column and
the one before it (for the carry), at fixed distances: a tiny model learns that faster than the solver learns to
solve, which is what keeps the verifier ahead of the solver (the gap best-of-N exploits).

    TF  segments "+?875" "066" "594" "001" "."  -> "+?875T066T594T001T.T"  (candidate 5641 for 5741)
        a judgment after every column and after the end marker '.'; here the second one should be F
    QE  "+?875T066T594T001T.T#"  -> grade "0".."4": the TF layout, then '#' and the number of right steps

TF judgment k says "step k is right": the candidate's digit in column k is what the column gives with the carry
implied by the candidate's previous column (exactly "digit k is right" when the steps before it are right); the
last one says "the answer ends here". s = prod_k p_k(T) / (p_k(T) + p_k(F)). At query time every judgment is
followed by T (the chain rule of "every step is correct"), exactly as the pretraining examples are laid out.
Candidates longer than the answer get extra columns with operand digits 0; shorter ones reach '.' early.
"""
from __future__ import annotations

from workloads.base import QEQuery, TFQuery

SOLVE, TF_MARK, QE_MARK, END = "=", "?", "#", "."
TRUE, FALSE = "T", "F"
OPS = "+-"


def split_prompt(prompt: str) -> tuple[str, str, str]:
    """'805+769=' -> ('805', '+', '769') (operands as written: least significant digit first)."""
    text = prompt[:-1] if prompt.endswith(SOLVE) else prompt
    for op in OPS:
        a, sep, b = text.partition(op)
        if sep:
            return a, op, b
    raise ValueError(f"not an arithmetic prompt: {prompt!r}")


def columns(prompt: str, response: str, width: int) -> tuple[str, list[str]]:
    """The operator and one 3-character column (a_k, b_k, c_k) per candidate character."""
    a, op, b = split_prompt(prompt)
    n = max(len(response), 0)
    a, b = a.ljust(max(width, n), "0"), b.ljust(max(width, n), "0")
    return op, [a[k] + b[k] + response[k] for k in range(n)]


def tf_segments(prompt: str, response: str, width: int) -> tuple[str, ...]:
    """One segment per candidate character (its column; the first carries the '<op>?' header), then '.'."""
    op, cols = columns(prompt, response, width)
    segs = [op + TF_MARK] + cols + [END]
    return (segs[0] + segs[1],) + tuple(segs[2:]) if cols else (segs[0] + END,)


def step_labels(prompt: str, response: str, width: int) -> list[bool]:
    """The right judgment after each segment of `tf_segments`, judged locally: column k is right when its digit
    is what the column gives with the carry (borrow) implied by the candidate's previous column -- i.e. "step k is
    right if the steps before it were". For a candidate whose earlier steps are right this is exactly "digit k is
    right"; a wrong step is judged wrong where it happens. The last judgment: the answer has the right length."""
    a, op, b = split_prompt(prompt)
    n = len(response)
    a, b = a.ljust(max(width, n), "0"), b.ljust(max(width, n), "0")
    out, carry = [], 0
    for k, c in enumerate(response):
        x, y = int(a[k]), int(b[k])
        want = (x + y + carry) % 10 if op == "+" else (x - y - carry) % 10
        out.append(k < width and c == str(want))
        d = int(c) if c.isdigit() else want  # a non-digit is wrong; carry on as if it were right
        carry = int(x + y > d) if op == "+" else int(d > x - y)
    return out + [n == width]


def tf_query(prompt: str, response: str, width: int) -> TFQuery:
    return TFQuery(segments=tf_segments(prompt, response, width), true_token=TRUE, false_token=FALSE)


def qe_text(prompt: str, response: str, width: int) -> str:
    """The TF layout with every judgment filled with T, then the grade mark: the per-column checks the TF
    judgments learned sit at the same positions, and the grade only has to count them."""
    return "".join(seg + TRUE for seg in tf_segments(prompt, response, width)) + QE_MARK


def qe_grade(prompt: str, response: str, width: int) -> int:
    """Number of the first `width` steps that are right (as the TF judgments judge them); the top grade only for
    an exactly right answer (every step right and the right length)."""
    labels = step_labels(prompt, response, width)
    steps, length_ok = labels[:-1], labels[-1]
    g = sum(steps[:width])
    return g if length_ok and all(steps) else min(g, width - 1)


def grade_tokens(width: int) -> tuple[str, ...]:
    return tuple(str(g) for g in range(width + 1))


def qe_query(prompt: str, response: str, width: int) -> QEQuery:
    return QEQuery(text=qe_text(prompt, response, width), grade_tokens=grade_tokens(width))
