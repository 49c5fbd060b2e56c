"""Cross-improvement with limited external data (docs/theory.md §5): strategies, simulation, planning with
intervals, gamma fit, and the verdicts every path gives instead of an impossible number."""
import json

import numpy as np
import pytest

from orchestrator.errors import SvgapError
from orchestrator.theory.allocation import plan, simulate, strategy_shares
from orchestrator.theory.gamma import fit_gamma
from orchestrator.theory.fit import fit_gap
from orchestrator.theory.model import GapModel

M = GapModel(rate=0.4, alpha_prime=3.0, beta_prime=1.0, U_s_inf=5.0, U_v_inf=4.2)


@pytest.mark.parametrize("rounds", [1, 2, 3, 9, 10])
def test_strategies_sum_to_one(rounds):
    for name in ("early", "uniform", "late"):
        eta = strategy_shares(name, rounds)
        assert len(eta) == rounds and sum(eta) == pytest.approx(1.0) and min(eta) >= 0


def test_strategy_definitions():
    assert strategy_shares("early", 9) == [1 / 3] * 3 + [0.0] * 6
    assert strategy_shares("late", 9) == [0.0] * 6 + [1 / 3] * 3
    assert strategy_shares("uniform", 4) == [0.25] * 4
    assert strategy_shares("early", 10) == [0.25] * 4 + [0.0] * 6  # ceil(10/3) = 4 rounds
    with pytest.raises(SvgapError, match="unknown strategy 'front'"):
        strategy_shares("front", 5)
    with pytest.raises(SvgapError, match="positive integer"):
        strategy_shares("early", 0)


def test_no_external_data_is_the_closed_form():
    out = simulate(M, 0.5, [0.0] * 8)
    np.testing.assert_allclose(out.U_s_path, M.U_s(np.arange(9)))
    np.testing.assert_allclose(out.U_v_path, M.U_v(np.arange(9)))
    assert out.J == 0 and out.U_s_inf == pytest.approx(M.U_s_inf)
    assert out.U_s_T == pytest.approx(M.U_s(8))


@pytest.mark.parametrize("name", ["early", "uniform", "late"])
def test_limit_moves_by_the_total_jump(name):
    """U_s,inf = U_s(0) - alpha (delta + J)/(alpha - beta), J the total drop of U_v (THEORY §3)."""
    g = 0.3
    eta = strategy_shares(name, 9)
    out = simulate(M, g, eta)
    a = M.alpha_prime / M.delta
    assert out.U_s_inf == pytest.approx(M.U_s0 - a * (M.delta + out.J))
    assert out.jumps[0] == pytest.approx(M.U_v0 * g * eta[0] / (1 + g * eta[0]))


@pytest.mark.parametrize("gamma", [0.01, 0.05])
def test_small_gamma_timing_matters_far_less_than_the_amount(gamma):
    p = plan(M, gamma, 9)
    lims = [o.U_s_inf for o in p.outcomes.values()]
    gains = [p.baseline.U_s_inf - x for x in lims]
    assert min(gains) > 0  # every allocation beats pure self-improvement
    spread = max(lims) - min(lims)
    assert spread < 0.25 * min(gains), (spread, gains)


@pytest.mark.parametrize("gamma", [0.01, 0.1, 0.5])
def test_multiplicative_jumps_favour_early_data(gamma):
    o = plan(M, gamma, 9).outcomes
    assert o["early"].J >= o["uniform"].J >= o["late"].J
    assert o["early"].U_s_inf <= o["uniform"].U_s_inf <= o["late"].U_s_inf
    assert o["early"].U_s_T <= o["uniform"].U_s_T <= o["late"].U_s_T


def test_plan_json_and_objectives():
    p = plan(M, 0.2, 6, ["late", "uniform", "early"], "limit")
    j = json.loads(json.dumps(p.to_json()))
    assert set(j) >= {"strategies", "best", "objective"}
    assert set(j["strategies"]) == {"late", "uniform", "early"}
    for o in j["strategies"].values():
        assert set(o) == {"eta", "U_s_T", "U_s_inf", "J"} and len(o["eta"]) == 6  # no samples: no ci
    assert j["best"] == "early" and j["objective"] == "limit"
    h = plan(M, 0.2, 6, {"front": [1, 0, 0, 0, 0, 0], "back": [0, 0, 0, 0, 0, 1]}, "horizon")
    assert h.best == min(h.outcomes, key=lambda k: h.outcomes[k].U_s_T) == "front"


def test_plan_from_measured_state_mid_run():
    us0, uv0 = M.U_s(4) + 0.1, M.U_v(4) - 0.05  # measured state off the fitted curve
    p = plan(M, 0.2, 4, start_round=4, U_s0=us0, U_v0=uv0)
    assert p.start_round == 4 and p.baseline.U_v_path[0] == pytest.approx(uv0)
    # without external data the limit is where the dynamics lead from the measured state, not the fitted curve's
    assert p.baseline.U_s_inf == pytest.approx(us0 - M.solver_per_gap * (us0 - uv0 - M.G_inf))
    assert p.baseline.U_s_inf != pytest.approx(M.U_s_inf)
    on_curve = plan(M, 0.2, 4, start_round=4)
    weaker_verifier = plan(M, 0.2, 4, start_round=4, U_v0=M.U_v(4) + 0.1)
    for name, o in weaker_verifier.outcomes.items():  # the same allocation with a weaker verifier ends worse
        assert o.U_s_inf > on_curve.outcomes[name].U_s_inf


@pytest.mark.parametrize("kwargs, msg", [
    (dict(gamma=0.0), "gamma must be a finite number > 0"),
    (dict(gamma=-1.0), "gamma must be a finite number > 0"),
    (dict(strategies={"x": [0.5, 0.4, 0.0]}), "strategy x: shares must sum to 1"),
    (dict(strategies={"x": [0.5, 0.5]}), "strategy x: has 2 entries, expected one per round \\(3\\)"),
    (dict(strategies={"x": [1.5, -0.5, 0.0]}), "finite and >= 0"),
    (dict(objective="soon"), "objective must be"),
    (dict(rounds=0), "rounds must be a positive integer"),
])
def test_plan_bad_input(kwargs, msg):
    args = dict(fit=M, gamma=0.2, rounds=3, strategies=("early",), objective="limit") | kwargs
    with pytest.raises(SvgapError, match=msg):
        plan(**args)


def test_plan_of_a_fit_without_decay_is_a_verdict():
    flat = fit_gap(range(6), [5.0] * 6, [4.0] * 6)
    p = plan(flat, 0.2, 4)
    assert p.best is None and p.verdict.startswith("no decay: no allocation can be predicted")
    assert all(o.U_s_inf is None and o.verdict for o in p.outcomes.values())


def _external_run(gamma: float, sigma: float, seed: int):
    """12 rounds, external data uniform over rounds 4..9 (after 4 warm-up rounds)."""
    eta = {t: 0.0 for t in range(12)}
    for i, e in enumerate(strategy_shares("uniform", 6)):
        eta[4 + i] = e
    out = simulate(M, gamma, [eta[t] for t in range(11)])
    rng = np.random.default_rng(seed)
    return (list(range(12)), np.asarray(out.U_s_path) + rng.normal(0, sigma, 12),
            np.asarray(out.U_v_path) + rng.normal(0, sigma, 12), eta)


def test_fit_gamma_recovers_gamma():
    rounds, s, v, eta = _external_run(0.5, 0.01, 0)
    given = fit_gamma(rounds, s, v, eta, model=M)
    assert given.gamma == pytest.approx(0.5, rel=0.03)
    joint = fit_gamma(rounds, s, v, eta)
    assert joint.gamma == pytest.approx(0.5, rel=0.1)
    assert joint.model.U_s_inf == pytest.approx(M.U_s_inf, rel=0.02)
    json.dumps(joint.to_json())
    eta_list = [eta[t] for t in rounds]  # aligned list form works too
    assert fit_gamma(rounds, s, v, eta_list, model=M).gamma == pytest.approx(given.gamma)


def test_fit_gamma_needs_external_data():
    rounds, s, v, _ = _external_run(0.5, 0.0, 0)
    with pytest.raises(SvgapError, match="no external data"):
        fit_gamma(rounds, s, v, [0.0] * 12)


def test_plan_of_a_model_outside_alpha_greater_than_beta_is_a_verdict():
    widening = GapModel(rate=0.5, alpha_prime=1.0, beta_prime=1.2, U_s_inf=0.6, U_v_inf=0.1)  # delta < 0: alpha < beta
    p = plan(widening, 0.2, 4)
    assert p.best is None and p.verdict.startswith("outside theory") and "delta <= 0" in p.verdict
    rising_verifier = GapModel(rate=0.5, alpha_prime=1.0, beta_prime=-0.2, U_s_inf=0.6, U_v_inf=0.4)
    assert plan(rising_verifier, 0.2, 4).verdict.startswith("outside theory")
    assert "beta < 0" in simulate(rising_verifier, 0.2, [0.5, 0.5]).verdict


def test_plan_intervals_and_the_distinguishability_rule():
    """Issue 16 item 2: the fit's bootstrap through every strategy; overlapping intervals -> uniform, and why."""
    from orchestrator.theory.intervals import propagate, samples_from_rows, widening

    t = np.arange(10)
    rng = np.random.default_rng(0)
    s, v, _ = M.predict(t)
    noisy = fit_gap(t, s * (1 + 0.02 * rng.standard_normal(10)), v * (1 + 0.02 * rng.standard_normal(10)))
    small = propagate(plan(noisy, 0.01, 6), samples_from_rows(noisy.boot, 0.01), widen=widening(noisy.n_rounds))
    c = small.comparison
    assert small.best == "early" and c["runner_up"] == "uniform" and c["intervals_overlap"] is True
    assert c["distinguishable"] is False and small.chosen == "uniform" and "indistinguishable" in small.why
    assert c["same_order_share"] > 0.9  # the model orders them the same way; the gap is below what the fit knows
    for o in small.outcomes.values():
        lo, hi = o.ci["U_s_inf"]
        assert lo <= o.U_s_inf <= hi and o.impossible_share == 0.0
    clean = fit_gap(t, s * (1 + 0.001 * rng.standard_normal(10)), v * (1 + 0.001 * rng.standard_normal(10)))
    big = propagate(plan(clean, 0.5, 6, objective="horizon"), samples_from_rows(clean.boot, 0.5),
                    widen=widening(clean.n_rounds))
    assert big.comparison["distinguishable"] is True and big.chosen == big.best == "early"
    j = json.loads(json.dumps(big.to_json()))
    assert {"comparison", "chosen", "why"} <= set(j) and j["strategies"]["early"]["ci"]["U_s_T"][0] > 0
