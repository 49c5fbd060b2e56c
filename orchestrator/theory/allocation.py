"""Cross-improvement with a limited budget of external data (THEORY §3, Proposition 5.1).

External data acts only through the verifier: before round t's update U_v <- U_v / (1 + gamma eta_t), where eta_t
is round t's share of the budget M (sum of eta_t = 1). Then one round of the closed-form dynamics runs from the new
state. The total drop J moves the solver's limit to U_s_inf = U_s(0) - alpha (delta + J) / (alpha - beta).

Timing convention, shared with the round loop and the scheduler: eta_t joins round t's training set, so its jump
first shows in the measured U_v(t+1); eta[i] of an allocation is the share of round start_round + i.

Strategies (stable names the external-data scheduler uses), for T rounds:
    uniform  1/T every round
    early    the budget spread evenly over the first ceil(T/3) rounds, nothing after
    late     the budget spread evenly over the last  ceil(T/3) rounds, nothing before
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal, Sequence

import numpy as np
from scipy.optimize import least_squares

from orchestrator.errors import SvgapError
from orchestrator.theory.fit import FitResult, check_series, least_squares_model
from orchestrator.theory.model import GapModel

STRATEGIES = ("early", "uniform", "late")
Objective = Literal["limit", "horizon"]


def strategy_shares(name: str, rounds: int) -> list[float]:
    """Shares eta_0..eta_{T-1} (sum 1) of a named strategy over `rounds` rounds; see the module docstring."""
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise SvgapError(f"rounds must be a positive integer, got {rounds!r}")
    k = math.ceil(rounds / 3)
    if name == "uniform":
        return [1.0 / rounds] * rounds
    if name == "early":
        return [1.0 / k] * k + [0.0] * (rounds - k)
    if name == "late":
        return [0.0] * (rounds - k) + [1.0 / k] * k
    raise SvgapError(f"unknown strategy {name!r} (choose one of {', '.join(STRATEGIES)})")


def check_shares(eta: Sequence[float], rounds: int, name: str = "shares") -> list[float]:
    """One share per round, each finite and >= 0, summing to 1 (within 1e-6)."""
    try:
        vals = [float(x) for x in eta]
    except (TypeError, ValueError):
        raise SvgapError(f"{name}: every share must be a number, got {list(eta)!r}") from None
    if len(vals) != rounds:
        raise SvgapError(f"{name}: has {len(vals)} entries, expected one per round ({rounds})")
    if any(not math.isfinite(x) or x < 0 for x in vals):
        raise SvgapError(f"{name}: shares must be finite and >= 0, got {vals}")
    if abs(sum(vals) - 1.0) > 1e-6:
        raise SvgapError(f"{name}: shares must sum to 1, they sum to {sum(vals):g}")
    return vals


def outside_theory(model: GapModel) -> str | None:
    """Why a fitted model breaks THEORY §2's alpha > beta >= 0 (then a verifier jump would not move the solver the
    way §3 assumes, and no allocation can be predicted with it); None when it is inside."""
    if model.delta > 0 and model.beta_prime >= 0:
        return None
    ratio = model.alpha_over_beta
    return (f"it has alpha/beta = {'undefined' if ratio is None else format(ratio, '.3g')} (alpha' "
            f"{model.alpha_prime:.3g}, beta' {model.beta_prime:.3g}), outside THEORY's alpha > beta >= 0")


def _check_gamma(gamma: float) -> float:
    if isinstance(gamma, bool) or not isinstance(gamma, (int, float)) or not math.isfinite(gamma) or gamma <= 0:
        raise SvgapError(f"gamma must be a finite number > 0, got {gamma!r}")
    return float(gamma)


def _as_model(fit: FitResult | GapModel) -> GapModel:
    if isinstance(fit, GapModel):
        return fit
    if isinstance(fit, FitResult):
        if not fit.decaying:
            raise SvgapError(f"cannot plan external data: the fit has no model ({fit.verdict})")
        return fit.model
    raise SvgapError(f"expected a FitResult or GapModel, got {type(fit).__name__}")


@dataclass
class AllocationOutcome:
    """Predicted path under one allocation: U_s_path/U_v_path hold rounds start_round..start_round+T."""

    U_s_T: float
    U_s_inf: float
    J: float
    U_s_path: list[float]
    U_v_path: list[float]
    jumps: list[float] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"U_s_T": self.U_s_T, "U_s_inf": self.U_s_inf, "J": self.J}


def simulate(fit: FitResult | GapModel, gamma: float, eta: Sequence[float], *, start_round: int = 0,
             U_s0: float | None = None, U_v0: float | None = None) -> AllocationOutcome:
    """Round by round from start_round: jump U_v <- U_v/(1+gamma eta_t), then one round of the dynamics.

    The start state is the model's curve at start_round unless U_s0/U_v0 (e.g. the measured values) are given.
    eta need not sum to 1 here (zeros = no external data); plan() checks budgets.
    """
    model = _as_model(fit)
    gamma = _check_gamma(gamma)
    eta = [float(x) for x in eta]
    if any(not math.isfinite(x) or x < 0 for x in eta):
        raise SvgapError(f"eta must be finite and >= 0, got {eta}")
    us = float(model.U_s(start_round) if U_s0 is None else U_s0)
    uv = float(model.U_v(start_round) if U_v0 is None else U_v0)
    s_path, v_path, jumps = [us], [uv], []
    for e in eta:
        jump = uv * gamma * e / (1.0 + gamma * e)
        jumps.append(jump)
        us, uv = model.step(us, uv - jump)
        s_path.append(us)
        v_path.append(uv)
    return AllocationOutcome(U_s_T=us, U_s_inf=model.limit_from(us, uv), J=float(sum(jumps)),
                             U_s_path=s_path, U_v_path=v_path, jumps=jumps)


@dataclass
class Plan:
    """Predicted outcome of each candidate allocation and the best one under `objective` (lower U_s is better):
    'limit' ranks by U_s_inf, 'horizon' by U_s at the end of the T planned rounds."""

    objective: str
    gamma: float
    rounds: int
    start_round: int
    shares: dict[str, list[float]]
    outcomes: dict[str, AllocationOutcome]
    baseline: AllocationOutcome
    best: str

    def to_json(self) -> dict:
        return {"strategies": {k: {"eta": self.shares[k], **self.outcomes[k].to_json()} for k in self.outcomes},
                "best": self.best, "objective": self.objective,
                "baseline": {"U_s_T": self.baseline.U_s_T, "U_s_inf": self.baseline.U_s_inf},
                "gamma": self.gamma, "rounds": self.rounds, "start_round": self.start_round}


def plan(fit: FitResult | GapModel, gamma: float, rounds: int,
         strategies: dict[str, Sequence[float]] | Sequence[str] = STRATEGIES, objective: Objective = "limit", *,
         start_round: int = 0, U_s0: float | None = None, U_v0: float | None = None) -> Plan:
    """Simulate each allocation over `rounds` rounds from start_round and pick the best by `objective`.

    strategies: names (early/uniform/late) or {name: explicit shares}. The baseline (no external data) is always
    simulated too, so the gain of any allocation over pure self-improvement is visible.
    """
    model = _as_model(fit)
    why = outside_theory(model)
    if why:
        raise SvgapError(f"cannot plan external data with this model: {why}")
    gamma = _check_gamma(gamma)
    if objective not in ("limit", "horizon"):
        raise SvgapError(f"objective must be 'limit' or 'horizon', got {objective!r}")
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise SvgapError(f"rounds must be a positive integer, got {rounds!r}")
    if isinstance(strategies, dict):
        shares = {str(k): check_shares(v, rounds, f"strategy {k}") for k, v in strategies.items()}
    else:
        shares = {str(k): strategy_shares(str(k), rounds) for k in strategies}
    if not shares:
        raise SvgapError("no strategies to plan")
    kw = dict(start_round=start_round, U_s0=U_s0, U_v0=U_v0)
    outcomes = {k: simulate(model, gamma, v, **kw) for k, v in shares.items()}
    baseline = simulate(model, gamma, [0.0] * rounds, **kw)
    key = (lambda k: outcomes[k].U_s_inf) if objective == "limit" else (lambda k: outcomes[k].U_s_T)
    best = min(outcomes, key=key)  # ties: the first listed
    return Plan(objective, gamma, rounds, start_round, shares, outcomes, baseline, best)


@dataclass
class GammaFit:
    """gamma estimated from a run that used external data; `model` is the gap model the simulation used."""

    gamma: float
    model: GapModel
    rmse: float
    n_rounds: int
    method: str

    def to_json(self) -> dict:
        return {"gamma": self.gamma, "rmse": self.rmse, "n_rounds": self.n_rounds, "method": self.method,
                "model": self.model.to_json()}


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
    """Simulated U_s, U_v at the observed rounds t (every integer round between is simulated)."""
    t0, t1 = int(t[0]), int(t[-1])
    out = simulate(model, gamma, [eta.get(r, 0.0) for r in range(t0, t1)], start_round=t0)
    return np.asarray(out.U_s_path)[t - t0], np.asarray(out.U_v_path)[t - t0]


def fit_gamma(rounds: Sequence[int], U_s: Sequence[float], U_v: Sequence[float],
              eta: Sequence[float] | dict[int, float], *, model: FitResult | GapModel | None = None,
              gamma_max: float = 1e3) -> GammaFit:
    """Estimate gamma from a run that used external data (eta_t at round t: the run's `external/eta` metric).

    Estimator: least squares of the simulated U_s and U_v (simulate(), jumps included) against the observed series.
    With `model` given (a fit on pure self-improvement: the run's warm-up rounds or a sister run) only log gamma is
    fitted. Without it, the five gap parameters and log gamma are fitted jointly (6 parameters, starting from a
    plain fit_gap of the series and a grid over gamma); this needs enough rounds before and after the jumps.
    """
    t, S, V = check_series(rounds, U_s, U_v)
    et = _series_eta(t, eta)
    if not any(v > 0 for r, v in et.items() if r < t[-1]):
        raise SvgapError("eta is 0 in every round before the last: the run used no external data to fit gamma on")
    y = np.concatenate([S, V])

    def resid(m: GapModel, g: float) -> np.ndarray:
        ps, pv = _paths(m, g, t, et)
        return np.concatenate([ps, pv]) - y

    grid = np.exp(np.linspace(math.log(1e-3), math.log(gamma_max), 61))
    if model is not None:
        m0 = _as_model(model)
        why = outside_theory(m0)
        if why:
            raise SvgapError(f"cannot fit gamma with the given model: {why}")
        sse = [float((resid(m0, g) ** 2).sum()) for g in grid]
        i = int(np.argmin(sse))
        lo, hi = math.log(grid[max(i - 1, 0)]), math.log(grid[min(i + 1, len(grid) - 1)])
        sol = least_squares(lambda x: resid(m0, math.exp(x[0])), [math.log(grid[i])], bounds=([lo], [hi]))
        g = math.exp(sol.x[0])
        return GammaFit(g, m0, float(np.sqrt(np.mean(sol.fun ** 2))), int(t.size), "gamma only (model given)")
    if t.size < 6:
        raise SvgapError(f"need at least 6 rounds to fit gamma jointly with the gap model, got {t.size}")
    m_init = least_squares_model(t, S, V)  # the jumps may make a plain fit non-physical: only a start
    if m_init.delta == 0:
        raise SvgapError("cannot fit gamma: U_s and U_v show no decay to start the joint fit from")
    g0 = grid[int(np.argmin([float((resid(m_init, g) ** 2).sum()) for g in grid]))]
    x0 = [math.log(m_init.rate), m_init.alpha_prime, m_init.beta_prime, m_init.U_s_inf, m_init.U_v_inf, math.log(g0)]

    def joint(x: np.ndarray) -> np.ndarray:
        m = GapModel(math.exp(x[0]), x[1], x[2], x[3], x[4])
        if m.delta == 0:
            return np.full(y.size, 1e6)
        return resid(m, math.exp(x[5]))

    sol = least_squares(joint, x0, x_scale="jac")
    x = sol.x
    m = GapModel(math.exp(x[0]), x[1], x[2], x[3], x[4])
    if m.U_s_inf < 0 or m.U_v_inf < 0:
        raise SvgapError(f"the joint fit puts a limit below 0 (U_s,inf {m.U_s_inf:.3g}, U_v,inf {m.U_v_inf:.3g}); "
                         f"an uncertainty cannot be negative: these rounds do not identify the model and gamma")
    if x[5] > math.log(gamma_max):
        raise SvgapError(f"the joint fit drives gamma to {math.exp(x[5]):.3g} (> {gamma_max:g}): every jump would "
                         f"empty U_v; these rounds do not identify gamma")
    return GammaFit(math.exp(x[5]), m, float(np.sqrt(np.mean(sol.fun ** 2))), int(t.size), "joint (6 parameters)")
