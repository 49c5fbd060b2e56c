"""The verdict words: what every theory path says instead of a number no physical run can have (docs/theory.md §7).

One vocabulary for `svgap fit`, `svgap plan`, the online fit and stop rule, the `planned` scheduler, the allocation
table and the report. A verdict is `word: detail`; callers compare the word, people read the detail.

    decaying              the fit holds: numbers follow
    no decay              U_s / U_v flat or rising: nothing to extrapolate
    no limit yet          U_s falls with no visible slowing (rate at its lower bound)
    no identifiable rate  the whole decay happens within one round (rate at its upper bound)
    negative uncertainty  a predicted U (a limit, a point of a simulated path) is below 0; U = -log pi >= 0
    outside theory        the fitted model breaks alpha > beta >= 0 (delta <= 0 or beta' < 0)
    negative gap          G_inf < 0: the solver would end up more certain than its own BoN pick
    fit failed            the optimizer did not converge (success false)
    at bound              a fitted parameter sits at the edge of its search range (gamma at its grid edge)
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from orchestrator.errors import SvgapError

DECAYING = "decaying"
NO_DECAY = "no decay"
NO_LIMIT_YET = "no limit yet"
NO_RATE = "no identifiable rate"
NEGATIVE_UNCERTAINTY = "negative uncertainty"
OUTSIDE_THEORY = "outside theory"
NEGATIVE_GAP = "negative gap"
FIT_FAILED = "fit failed"
AT_BOUND = "at bound"
WORDS = (DECAYING, NO_DECAY, NO_LIMIT_YET, NO_RATE, NEGATIVE_UNCERTAINTY, OUTSIDE_THEORY, NEGATIVE_GAP, FIT_FAILED,
         AT_BOUND)


@dataclass(frozen=True)
class Verdict:
    """Why a theory path gives no number: one of WORDS and a sentence saying what was seen."""

    word: str
    detail: str

    def __post_init__(self) -> None:
        if self.word not in WORDS:
            raise ValueError(f"unknown verdict word {self.word!r}")

    def __str__(self) -> str:
        return f"{self.word}: {self.detail}"


class NoPrediction(SvgapError):
    """Raised by a theory function that has no physical result; `verdict` says which case it is."""

    def __init__(self, verdict: Verdict) -> None:
        super().__init__(str(verdict))
        self.verdict = verdict


def word_of(text: str | None) -> str | None:
    """The verdict word a verdict text starts with (None for text that is not a verdict)."""
    if not text:
        return None
    return next((w for w in WORDS if text == w or text.startswith(w + ":") or text.startswith(w + " (")), None)


def model_verdict(model) -> Verdict | None:
    """A GapModel that docs/theory.md §2-§5 cannot use, or None. Checked in this order: outside theory, negative
    uncertainty, negative gap (a model can break several; the first is named)."""
    ap, bp = model.alpha_prime, model.beta_prime
    if not all(math.isfinite(x) for x in (model.rate, ap, bp, model.U_s_inf, model.U_v_inf)):
        return Verdict(FIT_FAILED, "the fitted model has a non-finite parameter")
    if not (ap - bp > 0 and bp >= 0):
        return Verdict(OUTSIDE_THEORY, f"alpha' {ap:.3g}, beta' {bp:.3g} give "
                                       f"{'delta <= 0 (alpha <= beta)' if ap - bp <= 0 else 'beta < 0'}; "
                                       f"the theory (docs/theory.md §2) needs alpha > beta >= 0")
    if model.U_s_inf < 0 or model.U_v_inf < 0:
        return Verdict(NEGATIVE_UNCERTAINTY, f"the limits U_s,inf {model.U_s_inf:.3g}, U_v,inf "
                                             f"{model.U_v_inf:.3g} include a value below 0")
    if model.G_inf < 0:
        return Verdict(NEGATIVE_GAP, f"G_inf = {model.G_inf:.3g} < 0")
    return None


def uncertainty_verdict(what: str, *values: float) -> Verdict | None:
    """NEGATIVE_UNCERTAINTY when any predicted uncertainty is below 0 (or not finite)."""
    bad = [v for v in values if not (math.isfinite(v) and v >= 0)]
    if bad:
        return Verdict(NEGATIVE_UNCERTAINTY, f"{what} would be {bad[0]:.3g}; an uncertainty cannot be below 0")
    return None


def require(verdict: Verdict | None) -> None:
    """Raise NoPrediction for a verdict (a no-op for None)."""
    if verdict is not None:
        raise NoPrediction(verdict)
