"""Closed forms of the solver-verifier gap dynamics (docs/theory.md §2, Proposition 3.1).

    dU_s/dt = -alpha E(t),  dU_v/dt = -beta E(t),  E(t) = k G(t) - b,  alpha > beta >= 0

integrates to one shared rate r = k (alpha - beta):

    G(t)   = delta e^{-rt} + G_inf
    U_s(t) = alpha' e^{-rt} + U_s_inf
    U_v(t) = beta'  e^{-rt} + U_v_inf

Only (r, alpha', beta', U_s_inf, U_v_inf) are identifiable from data, so that is what GapModel holds; the rest
(delta, G_inf, alpha/beta, rounds to eps) is derived. numpy only: no Ray, no MLflow.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from orchestrator.errors import SvgapError

ArrayLike = float | int | np.ndarray | list


@dataclass(frozen=True)
class GapModel:
    """The five identifiable parameters of Proposition 3.1 (t in rounds, U in the fitted quantity's units)."""

    rate: float
    alpha_prime: float
    beta_prime: float
    U_s_inf: float
    U_v_inf: float

    @classmethod
    def from_dynamics(cls, alpha: float, beta: float, k: float, b: float, U_s0: float, U_v0: float) -> "GapModel":
        """Integrate the ODE from its physical constants (used by tests and for what-if studies)."""
        if not (alpha > beta >= 0) or k <= 0:
            raise SvgapError(f"need alpha > beta >= 0 and k > 0, got alpha={alpha}, beta={beta}, k={k}")
        delta = U_s0 - U_v0 - b / k
        ap = alpha * delta / (alpha - beta)
        bp = beta * delta / (alpha - beta)
        return cls(k * (alpha - beta), ap, bp, U_s0 - ap, U_v0 - bp)

    # --- derived quantities -------------------------------------------------------------------------------------
    @property
    def delta(self) -> float:
        """Initial excess gap over equilibrium: delta = alpha' - beta' = G(0) - G_inf."""
        return self.alpha_prime - self.beta_prime

    @property
    def G_inf(self) -> float:
        """Equilibrium gap b/k: > 0 means the verifier stays ahead of the solver forever."""
        return self.U_s_inf - self.U_v_inf

    @property
    def alpha_over_beta(self) -> float | None:
        """alpha/beta = alpha'/beta'; None when beta' is 0 (the verifier does not move)."""
        if self.beta_prime == 0:
            return None
        return self.alpha_prime / self.beta_prime

    @property
    def U_s0(self) -> float:
        return self.alpha_prime + self.U_s_inf

    @property
    def U_v0(self) -> float:
        return self.beta_prime + self.U_v_inf

    @property
    def solver_per_gap(self) -> float:
        """alpha/(alpha-beta) = alpha'/delta: how far U_s falls per unit the gap closes. Undefined at delta = 0."""
        if self.delta == 0:
            raise SvgapError("the model has delta = 0: how a gap change splits between solver and verifier "
                             "(alpha/(alpha-beta)) is not identifiable")
        return self.alpha_prime / self.delta

    # --- curves -------------------------------------------------------------------------------------------------
    def _decay(self, t: ArrayLike) -> np.ndarray | float:
        x = np.exp(-self.rate * np.asarray(t, dtype=float))
        return float(x) if x.ndim == 0 else x

    def U_s(self, t: ArrayLike):
        return self.alpha_prime * self._decay(t) + self.U_s_inf

    def U_v(self, t: ArrayLike):
        return self.beta_prime * self._decay(t) + self.U_v_inf

    def G(self, t: ArrayLike):
        return self.delta * self._decay(t) + self.G_inf

    def predict(self, t: ArrayLike):
        """(U_s(t), U_v(t), G(t)) at round(s) t."""
        return self.U_s(t), self.U_v(t), self.G(t)

    def rounds_to_eps(self, eps: float) -> float:
        """Corollary 3.2: G is within eps of G_inf once t > ln(|delta|/eps)/r (|delta|: also valid for delta <= 0)."""
        if eps <= 0:
            raise SvgapError(f"eps must be > 0, got {eps}")
        d = abs(self.delta)
        if d <= eps:
            return 0.0
        return math.log(d / eps) / self.rate

    # --- state form, for cross-improvement (docs/theory.md §5) ------------------------------------------------------------
    def step(self, U_s: float, U_v: float, rounds: float = 1.0) -> tuple[float, float]:
        """Advance any state (U_s, U_v) by `rounds` of the dynamics: the excess gap G - G_inf decays by e^{-r},
        and each unit it closes lowers U_s by alpha/(alpha-beta) and U_v by beta/(alpha-beta)."""
        a = self.solver_per_gap
        closed = (U_s - U_v - self.G_inf) * (1.0 - math.exp(-self.rate * rounds))
        return U_s - a * closed, U_v - (a - 1.0) * closed

    def limit_from(self, U_s: float, U_v: float) -> float:
        """U_s_inf reached from state (U_s, U_v) if no more external data comes: U_s - alpha/(alpha-beta)(G - G_inf)."""
        return U_s - self.solver_per_gap * (U_s - U_v - self.G_inf)

    def to_json(self) -> dict:
        return {"rate": float(self.rate), "alpha_prime": float(self.alpha_prime),
                "beta_prime": float(self.beta_prime), "U_s_inf": float(self.U_s_inf), "U_v_inf": float(self.U_v_inf)}
