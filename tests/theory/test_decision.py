"""The decision interface (orchestrator/theory/decision.py): the online stop rule's three answers, its reasons, and
the multiplicity-corrected trial comparison of the sweep. Pure numpy: no Ray, no MLflow."""
from __future__ import annotations

import math

import numpy as np
import pytest

from orchestrator.errors import SvgapError
from orchestrator.theory.decision import CONTINUE, STOP, UNDETERMINED, decide_stop
from orchestrator.theory.trial_compare import compare_trials
from orchestrator.theory.limit_interval import profile_batch
from orchestrator.theory.model import GapModel


def _run(rate: float, n: int, noise: float, seed: int = 0, limit: float = 2.0, ap: float = 2.0):
    m = GapModel(rate=rate, alpha_prime=ap, beta_prime=0.4 * ap, U_s_inf=limit, U_v_inf=limit - 0.5)
    t = np.arange(n)
    S, V, _ = m.predict(t)
    rng = np.random.default_rng(seed)
    return t, S * (1 + noise * rng.standard_normal(n)), V * (1 + noise * rng.standard_normal(n))


def test_stops_a_clearly_plateaued_run():
    d = decide_stop(*_run(0.7, 10, 0.01), threshold=0.1)
    assert d.decision == STOP and d.stops
    assert d.gain_upper < 0.1 and 0 <= d.gain <= d.gain_upper
    assert "upper bound < 0.1" in d.reason and "U_s(9) - U_s,inf" in d.reason


def test_continues_a_clearly_decaying_run():
    d = decide_stop(*_run(0.2, 6, 0.01), threshold=0.1)
    assert d.decision == CONTINUE and not d.stops
    assert d.gain > 0.1 and d.gain_upper >= 0.1


def test_undetermined_on_four_noisy_rounds():
    answers = {decide_stop(*_run(0.3, 4, 0.04, seed=s), threshold=0.1).decision for s in range(5)}
    assert answers == {UNDETERMINED}


def test_never_stops_while_external_data_is_pending():
    d = decide_stop(*_run(0.7, 10, 0.01), threshold=0.1, external_pending=True)
    assert d.decision == CONTINUE
    assert d.reason.startswith("external data is still to come")
    assert d.gain_upper < 0.1  # the fit would stop; the pending data forbids it


def test_bad_input_is_a_one_line_undetermined_or_error():
    t, S, V = _run(0.5, 6, 0.01)
    few = decide_stop(t[:3], S[:3], V[:3], threshold=0.1)
    assert few.decision == UNDETERMINED and few.reason.startswith("too few rounds: 3 < 4")
    S = S.copy()
    S[2] = float("nan")
    nan = decide_stop(t, S, V, threshold=0.1)
    assert nan.decision == UNDETERMINED and "not finite" in nan.reason and "\n" not in nan.reason
    with pytest.raises(SvgapError, match="threshold"):
        decide_stop(t, V, V, threshold=0.0)


def test_a_flat_series_stops_only_when_shown_flat():
    rng = np.random.default_rng(3)
    t = np.arange(10)
    flat = decide_stop(t, 2.0 * (1 + 0.002 * rng.standard_normal(10)), 1.5 * (1 + 0.002 * rng.standard_normal(10)),
                       threshold=0.1)
    assert flat.decision == STOP and flat.gain == 0.0 and "flat within noise" in flat.reason
    t4 = np.arange(5)
    short = decide_stop(t4, 2.0 * (1 + 0.05 * rng.standard_normal(5)), 1.5 * (1 + 0.05 * rng.standard_normal(5)),
                        threshold=0.1)
    assert short.decision == UNDETERMINED and "not shown flat" in short.reason


def test_to_json_has_the_stop_object_of_the_cli():
    out = decide_stop(*_run(0.7, 10, 0.01), threshold=0.1).to_json()
    assert {"decision", "gain", "gain_upper", "threshold", "reason"} <= set(out)
    assert out["threshold"] == 0.1 and out["rounds"] == list(range(10))
    assert math.isfinite(out["estimates"]["U_s_inf"])


def test_profile_intervals_cover_with_autocorrelated_rounds():
    """The calibration the stop rule relies on: 6 rounds, 2 % noise, AR(1) rho 0.5 -> 95 % intervals cover ~95 %."""
    rng = np.random.default_rng(11)
    B, n = 400, 6
    rate, ap, lim = rng.uniform(0.1, 0.7, B), rng.uniform(1, 3, B), rng.uniform(1.5, 4, B)
    t = np.arange(n)
    x = np.exp(-rate[:, None] * t)
    e = rng.standard_normal((2, B, n))
    for i in range(1, n):
        e[:, :, i] = 0.5 * e[:, :, i - 1] + math.sqrt(0.75) * e[:, :, i]
    S = (ap[:, None] * x + lim[:, None]) * (1 + 0.02 * e[0])
    V = (0.4 * ap[:, None] * x + lim[:, None] - 0.5) * (1 + 0.02 * e[1])
    p = profile_batch(t, S, V)
    lo, hi = p.U_s_inf_ci.T
    used = (p.decay_p <= 0.05) & np.isfinite(lo)
    cover = ((lo <= lim) & (lim <= hi))[used].mean()
    assert used.mean() > 0.5 and 0.88 <= cover <= 0.995


# --- the sweep ------------------------------------------------------------------------------------------------------


def test_compare_trials_stops_a_worse_trial_but_not_the_best():
    c = compare_trials({"good": _run(0.7, 9, 0.01, 1, limit=2.0), "bad": _run(0.7, 9, 0.01, 2, limit=3.0)})
    assert c.trials["bad"].decision == STOP and "cannot reach trial good" in c.trials["bad"].reason
    assert c.trials["good"].decision == CONTINUE
    assert c.interval_level == pytest.approx(1 - 0.05 / 2)  # Bonferroni over the 2 trials compared


def test_compare_trials_corrects_for_more_trials():
    """The same pair among more trials gets wider intervals (level 1 - 0.05/m)."""
    pair = {"good": _run(0.7, 9, 0.01, 1, limit=2.0), "bad": _run(0.7, 9, 0.01, 2, limit=3.0)}
    two = compare_trials(pair).trials["bad"].limit_ci
    many = compare_trials({**pair, **{f"o{i}": _run(0.7, 9, 0.01, 10 + i, limit=2.5) for i in range(6)}})
    assert many.interval_level == pytest.approx(1 - 0.05 / 8)
    lo, hi = many.trials["bad"].limit_ci
    assert lo < two[0] and hi > two[1]


def test_compare_trials_keeps_pending_trials_and_different_scoring_apart():
    trials = {"good": _run(0.7, 9, 0.01, 1, limit=2.0), "bad": _run(0.7, 9, 0.01, 2, limit=3.0)}
    pending = compare_trials(trials, external_pending={"bad": True})
    assert pending.trials["bad"].decision == CONTINUE and "external data" in pending.trials["bad"].reason
    hot = compare_trials(trials, scoring={"good": {"generation.temperature": 0.7},
                                          "bad": {"generation.temperature": 1.0}})
    assert hot.trials["bad"].decision == CONTINUE
    assert len(hot.notes) == 1 and "generation.temperature" in hot.notes[0]


def test_compare_trials_without_a_prediction_is_undetermined():
    t, S, V = _run(0.7, 9, 0.01, 1)
    c = compare_trials({"a": (t[:3], S[:3], V[:3]), "b": (t, S, V)})
    assert c.trials["a"].decision == UNDETERMINED and "too few rounds" in c.trials["a"].reason
    assert c.trials["b"].decision == CONTINUE


def test_sweep_decision_reads_tune_histories():
    from orchestrator.theory.trial_compare import sweep_decision

    def hist(run):
        t, S, V = run
        return [{"round": int(a), "U_s": float(b), "U_v": float(c)} for a, b, c in zip(t, S, V)]

    h = {"good": hist(_run(0.7, 9, 0.01, 1, limit=2.0)), "bad": hist(_run(0.7, 9, 0.01, 2, limit=3.0))}
    bad, notes = sweep_decision(h, "bad")
    assert bad.decision == STOP and notes == []
    assert sweep_decision(h, "bad", external_pending={"bad": True})[0].decision == CONTINUE
