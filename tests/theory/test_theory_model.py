"""Closed forms of Proposition 3.1 (THEORY §2): the ODE holds, the derived quantities are consistent."""
import math

import numpy as np
import pytest

from orchestrator.errors import SvgapError
from orchestrator.theory.model import GapModel

ALPHA, BETA, K, B, US0, UV0 = 0.9, 0.3, 0.5, 0.2, 8.0, 5.2


@pytest.fixture
def model() -> GapModel:
    return GapModel.from_dynamics(ALPHA, BETA, K, B, US0, UV0)


def test_closed_form_satisfies_the_ode(model):
    t = np.linspace(0.0, 12.0, 241)
    h = 1e-5
    dUs = (model.U_s(t + h) - model.U_s(t - h)) / (2 * h)
    dUv = (model.U_v(t + h) - model.U_v(t - h)) / (2 * h)
    E = K * model.G(t) - B
    np.testing.assert_allclose(dUs, -ALPHA * E, atol=1e-7)
    np.testing.assert_allclose(dUv, -BETA * E, atol=1e-7)
    np.testing.assert_allclose(model.G(t), model.U_s(t) - model.U_v(t), atol=1e-12)


def test_identities(model):
    assert model.rate == pytest.approx(K * (ALPHA - BETA))
    assert model.U_s(0) == pytest.approx(US0) and model.U_v(0) == pytest.approx(UV0)
    assert model.G_inf == pytest.approx(B / K)
    assert model.delta == pytest.approx(US0 - UV0 - B / K)
    assert model.alpha_prime - model.beta_prime == pytest.approx(model.delta)
    assert model.alpha_over_beta == pytest.approx(ALPHA / BETA)
    assert model.solver_per_gap == pytest.approx(ALPHA / (ALPHA - BETA))
    assert model.U_s(1e6) == pytest.approx(model.U_s_inf)
    assert model.G(1e6) == pytest.approx(model.G_inf)
    us, uv, g = model.predict([0, 1, 2])
    assert len(us) == len(uv) == len(g) == 3
    assert isinstance(model.U_s(3), float)


def test_larger_initial_gap_gives_a_stronger_solver():
    """Holding U_v(0): dU_s,inf/dG_0 = -beta/(alpha-beta)."""
    h = 1e-4
    lo = GapModel.from_dynamics(ALPHA, BETA, K, B, US0 - h, UV0).U_s_inf
    hi = GapModel.from_dynamics(ALPHA, BETA, K, B, US0 + h, UV0).U_s_inf
    assert (hi - lo) / (2 * h) == pytest.approx(-BETA / (ALPHA - BETA), rel=1e-6)


def test_rounds_to_eps(model):
    eps = 0.01
    t = model.rounds_to_eps(eps)
    assert t == pytest.approx(math.log(model.delta / eps) / model.rate)
    assert abs(model.G(t) - model.G_inf) == pytest.approx(eps)
    assert abs(model.G(t + 0.1) - model.G_inf) < eps
    assert model.rounds_to_eps(10 * abs(model.delta)) == 0.0
    neg = GapModel(0.5, -1.0, -0.5, 2.0, 1.0)  # delta < 0: the gap widens; |delta| is used
    assert neg.delta < 0
    assert neg.rounds_to_eps(0.01) == pytest.approx(math.log(0.5 / 0.01) / 0.5)
    with pytest.raises(SvgapError):
        model.rounds_to_eps(0.0)


def test_state_step_follows_the_closed_form(model):
    for t in range(6):
        us, uv = model.step(model.U_s(t), model.U_v(t))
        assert us == pytest.approx(model.U_s(t + 1)) and uv == pytest.approx(model.U_v(t + 1))
        assert model.limit_from(model.U_s(t), model.U_v(t)) == pytest.approx(model.U_s_inf)
    us, uv = model.step(model.U_s(0), model.U_v(0), rounds=2.5)
    assert us == pytest.approx(model.U_s(2.5))


def test_invalid_dynamics_and_degenerate_model():
    with pytest.raises(SvgapError, match="alpha > beta"):
        GapModel.from_dynamics(0.2, 0.3, 1.0, 0.1, 5.0, 4.0)
    with pytest.raises(SvgapError, match="k > 0"):
        GapModel.from_dynamics(0.5, 0.3, 0.0, 0.1, 5.0, 4.0)
    flat = GapModel(0.5, 1.0, 1.0, 3.0, 2.0)  # delta = 0
    with pytest.raises(SvgapError, match="delta = 0"):
        flat.step(4.0, 3.0)
    assert GapModel(0.5, 1.0, 0.0, 3.0, 2.0).alpha_over_beta is None
