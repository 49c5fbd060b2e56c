"""gamma, the strength of external data (docs/theory.md §5), fitted from a run that used some: U_v jumps to
U_v / (1 + gamma eta_t) before round t's update, then the gap dynamics run on. Least squares of the simulated
series (theory/allocation.py's recursion) against the measured ones; every unphysical result is a verdict."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
from scipy.optimize import least_squares

from orchestrator.errors import SvgapError
from orchestrator.theory import verdicts as vd
from orchestrator.theory.allocation import _as_model, _run
from orchestrator.theory.fit import R_MAX, FitResult, check_series, least_squares_model
from orchestrator.theory.model import GapModel


@dataclass
class GammaFit:
    """gamma estimated from a run that used external data; `model` is the gap model the simulation used.
    samples: rows [rate, alpha', U_s_inf, beta', U_v_inf, gamma] drawn from the least-squares covariance (None when
    it is singular), what plan intervals propagate."""

    gamma: float
    model: GapModel
    rmse: float
    n_rounds: int
    method: str
    samples: np.ndarray | None = field(default=None, repr=False)
    eta: dict | None = None       # the shares it was fitted on (its one allocation shape), set by the caller
    budget: str | None = None     # the budget those shares are of (the run's external.budget param)

    def to_json(self) -> dict:
        out = {"gamma": self.gamma, "rmse": self.rmse, "n_rounds": self.n_rounds, "method": self.method,
               "model": self.model.to_json()}
        if self.samples is not None and len(self.samples):
            q = np.percentile(self.samples[:, 5], [2.5, 97.5])
            out["gamma_ci"] = [float(q[0]), float(q[1])]
        return out


def _series_eta(rounds: np.ndarray, eta: Sequence[float] | dict[int, float]) -> dict[int, float]:
    if isinstance(eta, dict):
        out = {int(k): float(v) for k, v in eta.items()}
    else:
        if len(eta) != len(rounds):
            raise SvgapError(f"eta has {len(eta)} entries, expected one per round ({len(rounds)})")
        out = {int(t): float(e) for t, e in zip(rounds, eta)}
    if any(not math.isfinite(v) or v < 0 for v in out.values()):
        raise SvgapError("eta must be finite and >= 0 in every round")
    return out


def _paths(model: GapModel, gamma: float, t: np.ndarray, eta: dict[int, float]) -> tuple[np.ndarray, np.ndarray]:
    """Simulated U_s, U_v at the observed rounds t (every integer round between is simulated; no guards: the
    optimizer may try models outside the theory on its way)."""
    t0, t1 = int(t[0]), int(t[-1])
    s_path, v_path, _, _ = _run(model, gamma, [eta.get(r, 0.0) for r in range(t0, t1)], float(model.U_s(t0)),
                                float(model.U_v(t0)))
    return np.asarray(s_path)[t - t0], np.asarray(v_path)[t - t0]


def _draw(sol, to_row, n: int = 200, seed: int = 0) -> np.ndarray | None:
    """n parameter rows from the Gaussian approximation N(x, s^2 (J'J)^-1) of a least-squares solution, mapped by
    to_row; None when J'J is singular (the parameters are not all identified)."""
    jac, res = np.asarray(sol.jac, float), np.asarray(sol.fun, float)
    dof = res.size - jac.shape[1]
    if dof <= 0:
        return None
    try:
        cov = np.linalg.inv(jac.T @ jac) * float(res @ res) / dof
    except np.linalg.LinAlgError:
        return None
    if not np.all(np.isfinite(cov)) or np.any(np.diag(cov) < 0):
        return None
    x = np.random.default_rng(seed).multivariate_normal(sol.x, cov, size=n, check_valid="ignore")
    return np.asarray([to_row(r) for r in x])


def fit_gamma(rounds: Sequence[int], U_s: Sequence[float], U_v: Sequence[float],
              eta: Sequence[float] | dict[int, float], *, model: FitResult | GapModel | None = None,
              gamma_max: float = 1e3, max_nfev: int | None = None) -> GammaFit:
    """Estimate gamma from a run that used external data (eta_t at round t: the run's `external/eta` metric).

    Estimator: least squares of the simulated U_s and U_v (jumps included) against the observed series. With
    `model` given (a fit on pure self-improvement: the run's warm-up rounds or a sister run) only log gamma is
    fitted. Without it, the five gap parameters and log gamma are fitted jointly (6 parameters, starting from a
    plain least-squares fit of the series and a grid over gamma); this needs enough rounds before and after the jumps.
    No physical result raises NoPrediction with its verdict: a failed optimizer (fit failed), gamma at the edge of
    [1e-3, gamma_max] or the rate at its cap (at bound), a joint model outside the theory, with a negative limit or
    a negative gap. max_nfev caps the optimizer's evaluations (None: scipy's default).
    """
    t, S, V = check_series(rounds, U_s, U_v)
    et = _series_eta(t, eta)
    if not any(v > 0 for r, v in et.items() if r < t[-1]):
        raise SvgapError("eta is 0 in every round before the last: the run used no external data to fit gamma on")
    y = np.concatenate([S, V])

    def resid(m: GapModel, g: float) -> np.ndarray:
        ps, pv = _paths(m, g, t, et)
        return np.concatenate([ps, pv]) - y

    g_lo = 1e-3
    grid = np.exp(np.linspace(math.log(g_lo), math.log(gamma_max), 61))
    if model is not None:
        return _fit_gamma_only(_as_model(model), resid, grid, t.size, g_lo, gamma_max, max_nfev)
    if t.size < 6:
        raise SvgapError(f"need at least 6 rounds to fit gamma jointly with the gap model, got {t.size}")
    return _fit_joint(t, S, V, resid, grid, g_lo, gamma_max, max_nfev)


def _fit_gamma_only(m0: GapModel, resid: Callable[[GapModel, float], np.ndarray], grid: np.ndarray, n_rounds: int,
                    g_lo: float, gamma_max: float, max_nfev: int | None) -> GammaFit:
    """log gamma alone, the gap model given: the best grid point, then least squares between its neighbours."""
    edge = vd.Verdict(vd.AT_BOUND, f"gamma goes to the edge of its range [{g_lo:g}, {gamma_max:g}]: these rounds do "
                                   f"not identify gamma")
    vd.require(vd.model_verdict(m0))
    sse = [float((resid(m0, g) ** 2).sum()) for g in grid]
    i = int(np.argmin(sse))
    lo, hi = math.log(grid[max(i - 1, 0)]), math.log(grid[min(i + 1, len(grid) - 1)])
    sol = least_squares(lambda x: resid(m0, math.exp(x[0])), [math.log(grid[i])], bounds=([lo], [hi]),
                        max_nfev=max_nfev)
    if not sol.success:
        raise vd.NoPrediction(vd.Verdict(vd.FIT_FAILED, f"the gamma fit did not converge ({sol.message})"))
    if (i == 0 and sol.x[0] <= lo + 1e-9) or (i == len(grid) - 1 and sol.x[0] >= hi - 1e-9):
        raise vd.NoPrediction(edge)
    g = math.exp(sol.x[0])
    rows = _draw(sol, lambda x: [m0.rate, m0.alpha_prime, m0.U_s_inf, m0.beta_prime, m0.U_v_inf, math.exp(x[0])])
    return GammaFit(g, m0, float(np.sqrt(np.mean(sol.fun ** 2))), int(n_rounds), "gamma only (model given)", rows)


def _fit_joint(t: np.ndarray, S: np.ndarray, V: np.ndarray, resid: Callable[[GapModel, float], np.ndarray],
               grid: np.ndarray, g_lo: float, gamma_max: float, max_nfev: int | None) -> GammaFit:
    """The five gap parameters and log gamma together, from a plain least-squares fit and the best grid gamma."""
    m_init = least_squares_model(t, S, V)  # the jumps may make a plain fit non-physical: only a start
    if m_init.delta == 0:
        raise vd.NoPrediction(vd.Verdict(vd.NO_DECAY, "U_s and U_v show no decay to start the joint gamma fit from"))
    g0 = grid[int(np.argmin([float((resid(m_init, g) ** 2).sum()) for g in grid]))]
    x0 = [math.log(m_init.rate), m_init.alpha_prime, m_init.beta_prime, m_init.U_s_inf, m_init.U_v_inf, math.log(g0)]
    size = S.size + V.size  # the residual vector: U_s then U_v

    def joint(x: np.ndarray) -> np.ndarray:
        m = GapModel(math.exp(x[0]), x[1], x[2], x[3], x[4])
        if m.delta == 0:
            return np.full(size, 1e6)
        return resid(m, math.exp(x[5]))

    sol = least_squares(joint, x0, x_scale="jac", max_nfev=max_nfev)
    x = sol.x
    m = GapModel(math.exp(x[0]), x[1], x[2], x[3], x[4])
    if not sol.success:
        raise vd.NoPrediction(vd.Verdict(vd.FIT_FAILED, f"the joint gap + gamma fit did not converge ({sol.message})"))
    why = vd.model_verdict(m)
    if why is not None:
        raise vd.NoPrediction(vd.Verdict(why.word, f"the joint gap + gamma fit: {why.detail}; these rounds do not "
                                                   f"identify the model and gamma"))
    if not math.log(g_lo) <= x[5] <= math.log(gamma_max):
        raise vd.NoPrediction(vd.Verdict(vd.AT_BOUND, f"the joint fit drives gamma to {math.exp(x[5]):.3g}, outside "
                                                      f"[{g_lo:g}, {gamma_max:g}]: these rounds do not identify "
                                                      f"gamma"))
    if m.rate >= R_MAX:
        raise vd.NoPrediction(vd.Verdict(vd.AT_BOUND, f"the joint fit puts the rate at {m.rate:.3g} >= its cap "
                                                      f"{R_MAX:g}: the decay is over within a round"))
    rows = _draw(sol, lambda z: [math.exp(z[0]), z[1], z[3], z[2], z[4], math.exp(z[5])])
    return GammaFit(math.exp(x[5]), m, float(np.sqrt(np.mean(sol.fun ** 2))), int(t.size), "joint (6 parameters)",
                    rows)


SHAPE_WIDEN = 2.0  # a gamma fitted from one allocation shape: plan intervals widened by this factor


def gamma_caveat(eta: dict[int, float] | None, fitted_budget: float | None, plan_budget: float | None) -> tuple[float, str]:
    """(widening of the plan's intervals, a sentence) for a gamma reused in a plan (docs/theory.md §5).

    gamma is fitted per share of one run's budget along that run's one allocation shape: it trades off against the
    gap model along that shape (not identified apart from it), so a plan of other shapes extrapolates -> widened by
    SHAPE_WIDEN. Reused at another budget, gamma eta = gamma count / budget no longer means the same jump -> refused
    (SvgapError). eta None: gamma was given, its provenance unknown -> said, not widened."""
    if eta is None:
        return 1.0, ("gamma given, not fitted here: svgap cannot check the budget and allocation shape it was fitted "
                     "at (a gamma from one run's shape is not identified apart from its gap model)")
    if fitted_budget is not None and plan_budget is not None and float(fitted_budget) != float(plan_budget):
        raise SvgapError(f"gamma was fitted per share of a budget of {fitted_budget:g} examples; reusing it at a "
                         f"budget of {plan_budget:g} changes what gamma eta means: refit at that budget or pass "
                         f"--gamma scaled yourself")
    shape = ", ".join(f"{t}: {e:.2f}" for t, e in sorted(eta.items()) if e > 0)
    return SHAPE_WIDEN, (f"gamma fitted from one run with a single allocation shape (shares {shape}): not identified "
                         f"apart from that shape, so every interval is widened x{SHAPE_WIDEN:g}")
