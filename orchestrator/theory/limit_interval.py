"""Profile-likelihood intervals for the quantities the decisions use: the rate r, the limit U_s,inf and the
remaining gain U_s(T) - U_s,inf = alpha' e^{-rT} after the last measured round T (docs/theory.md §2, §6).

Why not the residual bootstrap of theory/fit.py: it was validated at 9-11 rounds with independent noise, but the
stop rules decide at 4-6 rounds and real rounds share a model (autocorrelated errors). This module measures instead
of resampling:

- weighted least squares with relative residuals (U/observed - 1: multiplicative noise), both series sharing r;
- for a fixed r the model is linear in (alpha', U_s,inf, beta', U_v,inf), so the least squares with one linear
  combination c'theta held at v is SSE_min(r) + (v - c'theta(r))^2 / c'M(r)^{-1}c in closed form; the profile
  interval of any such quantity is the union over r of the values whose SSE stays under
  tau = SSE_min (1 + kappa F_{1,df}(level) / df), df = 2n - 5 (the exact F interval of a linear model);
- kappa >= 1 widens for autocorrelated rounds: the lag-1 autocorrelation of the residuals (bias-corrected, cut to
  [0, 0.9]) gives the variance ratio of an AR(1) level, (1 + rho)/(1 - rho), shrunk for few rounds;
- a quantity whose interval reaches an end of the rate grid is *not identified* (a straight-line fall cannot be
  told from a slow decay: the limit and the remaining gain are then unbounded), never a narrow interval;
- the flatness test: the F-test of the model against constant series, and for a flat series the one-sided upper
  bound of U_s's fall per round (straight line, t with n - 2 df), the bound a "shown flat" decision uses.

Everything is vectorised over a batch of runs measured at the same rounds (the benchmark fits thousands at once).
numpy/scipy only.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

R_GRID = 600  # log-spaced rates; an interval touching the lowest or highest is not identified on that side
RHO_PRIOR = 0.2  # rounds share a model: their errors are taken as somewhat autocorrelated
RHO_BIAS = 2.7   # x 1/n: the residual autocorrelation's small-sample bias and attenuation (3.0 over-covered: 99.2 % cells)
RHO_ATTEN = 4.5  # x 1/n: the residual autocorrelation moves only (1 - RHO_ATTEN/n) per unit of rho
RHO_GAIN_MAX = 2.0  # the attenuation correction 1/(1 - RHO_ATTEN/n) is cut here (few rounds: mostly the prior)
R_HI = 5.0    # per round: beyond this the whole decay happens within one round (theory/fit.py R_MAX)


@dataclass
class ProfileBatch:
    """Per run (arrays of shape (B,)): the estimates, intervals and tests the decisions read."""

    rate: np.ndarray
    U_s_inf: np.ndarray
    gain: np.ndarray            # alpha' e^{-rT}: predicted remaining fall of U_s after the last round T
    rate_ci: np.ndarray         # (B, 2); nan where not identified on that side
    U_s_inf_ci: np.ndarray      # (B, 2); lower end -inf when a straight-line fall is inside the region
    gain_ci: np.ndarray         # (B, 2); upper end +inf when not identified
    rate_identified: np.ndarray  # bool: the rate interval lies strictly inside the grid
    decay_p: np.ndarray         # F-test p-value: model vs constant U_s and U_v (small = the series decay)
    fall_upper: np.ndarray      # one-sided upper bound of U_s's fall per round (straight line)
    slope_p: np.ndarray         # one-sided p-value that U_s falls (straight line)
    level: np.ndarray           # U_s's mean over the last three rounds: a flat series' prediction
    kappa: np.ndarray           # the autocorrelation widening used


def _normal_eq(x: np.ndarray, w: np.ndarray):
    """Weighted 2x2 normal equations of y = A x + C with response 1 (relative residuals) for x (R, n), w (B, n).
    Returns M entries (B, R) and the solution (A, C) and SSE."""
    m00 = np.einsum("rn,bn->br", x * x, w * w)
    m01 = np.einsum("rn,bn->br", x, w * w)
    m11 = (w * w).sum(1)[:, None]
    b0 = np.einsum("rn,bn->br", x, w)
    b1 = w.sum(1)[:, None]
    det = np.maximum(m00 * m11 - m01 * m01, 1e-300)
    A = (m11 * b0 - m01 * b1) / det
    C = (m00 * b1 - m01 * b0) / det
    sse = np.maximum(w.shape[1] - (A * b0 + C * b1), 0.0)
    inv00, inv11 = m11 / det, m00 / det
    return A, C, sse, inv00, inv11


def _kappa(res: np.ndarray, n: int) -> np.ndarray:
    """Variance ratio (1 + rho)/(1 - rho) of an AR(1) mean for the residuals (B, 2 series, n rounds).

    The lag-1 autocorrelation of a few residuals of a 3-parameter fit is biased low (about -2.3/n at rho = 0,
    measured) and moves only about (1 - 4.5/n) per unit of rho, so it is shifted up by RHO_PRIOR + RHO_BIAS/n:
    at 5 rounds the widening is mostly this shift (rounds share a model: assume some autocorrelation), at 12 the
    data's. Calibrated on benchmarks/decisions.py's coverage table (rho 0 and 0.5, 5-12 rounds, 1-4 % noise)."""
    num = (res[..., 1:] * res[..., :-1]).sum((-1, -2))
    den = np.maximum((res * res).sum((-1, -2)), 1e-300)
    gain = min(1.0 / max(1.0 - RHO_ATTEN / n, 1e-9), RHO_GAIN_MAX)
    rho = np.clip((num / den + RHO_BIAS / n) * gain + RHO_PRIOR, 0.0, 0.8)
    return (1 + rho) / (1 - rho)


def _line(t: np.ndarray, S: np.ndarray, level: float):
    """Straight-line fall of U_s per round: (upper bound at `level`, one-sided p that it falls)."""
    n = t.size
    tc = t - t.mean()
    sxx = float((tc * tc).sum())
    slope = (S * tc).sum(1) / sxx
    resid = S - S.mean(1, keepdims=True) - slope[:, None] * tc
    se = np.sqrt(np.maximum((resid * resid).sum(1), 1e-300) / max(n - 2, 1) / sxx)
    q = stats.t.ppf(level, max(n - 2, 1))
    return -slope + q * se, stats.t.cdf(slope / se, max(n - 2, 1))


def profile_batch(t, S, V, *, level: float = 0.95, autocorr: bool = True) -> ProfileBatch:
    """Profile intervals for runs measured at rounds t (n,) with U_s S (B, n) and U_v V (B, n), all > 0."""
    t = np.asarray(t, float)
    S, V = np.atleast_2d(np.asarray(S, float)), np.atleast_2d(np.asarray(V, float))
    B, n = S.shape
    span = max(float(t[-1] - t[0]), 1.0)
    r = np.exp(np.linspace(np.log(0.01 / span), np.log(R_HI), R_GRID))
    x = np.exp(-r[:, None] * (t - t[0])[None, :])  # time from the first round: better conditioned
    ws, wv = 1.0 / S, 1.0 / V
    As, Cs, es, i00, i11 = _normal_eq(x, ws)
    Av, Cv, ev, _, _ = _normal_eq(x, wv)
    sse = es + ev
    rows = np.arange(B)
    k = np.argmin(sse, axis=1)
    sse_min = np.maximum(sse[rows, k], 1e-300)
    df = 2 * n - 5
    kappa = np.ones(B)
    if autocorr:
        xs = x[k]
        res = np.stack([1 - (As[rows, k, None] * xs + Cs[rows, k, None]) * ws,
                        1 - (Av[rows, k, None] * xs + Cv[rows, k, None]) * wv], axis=1)
        kappa = _kappa(res, n)
    tau = sse_min * (1 + kappa * stats.f.ppf(level, 1, df) / df)
    room = np.maximum(tau[:, None] - sse, 0.0)
    inside = sse <= tau[:, None]
    xT = np.exp(-r * (t[-1] - t[0]))[None, :]
    g = As * xT                                  # remaining gain at each r
    hw_g = np.sqrt(room * i00) * xT
    hw_c = np.sqrt(room * i11)
    big = np.inf
    g_lo = np.where(inside, g - hw_g, big).min(1)
    g_hi = np.where(inside, g + hw_g, -big).max(1)
    c_lo = np.where(inside, Cs - hw_c, big).min(1)
    c_hi = np.where(inside, Cs + hw_c, -big).max(1)
    at_lo, at_hi = inside[:, 0], inside[:, -1]
    g_hi = np.where(at_lo, np.inf, g_hi)
    c_lo = np.where(at_lo, -np.inf, c_lo)
    r_in = np.where(inside, r[None, :], np.nan)
    rate_ci = np.stack([np.where(at_lo, np.nan, np.nanmin(r_in, 1)), np.where(at_hi, np.nan, np.nanmax(r_in, 1))], 1)
    # flatness: constant series (2 parameters) against the model (5), relative residuals
    sse0 = _const_sse(ws) + _const_sse(wv)
    F = ((sse0 - sse_min) / 3) / (sse_min / df)
    fall_up, slope_p = _line(t, S, level)
    return ProfileBatch(rate=r[k], U_s_inf=Cs[rows, k], gain=g[rows, k], rate_ci=rate_ci,
                        U_s_inf_ci=np.stack([c_lo, c_hi], 1), gain_ci=np.stack([np.maximum(g_lo, 0.0), g_hi], 1),
                        rate_identified=~(at_lo | at_hi), decay_p=stats.f.sf(np.maximum(F, 0), 3, df),
                        fall_upper=fall_up, slope_p=slope_p, level=S[:, -3:].mean(1), kappa=kappa)


def _const_sse(w: np.ndarray) -> np.ndarray:
    """SSE of the best constant on relative residuals (1 - c w)."""
    c = w.sum(1) / (w * w).sum(1)
    return ((1 - c[:, None] * w) ** 2).sum(1)
