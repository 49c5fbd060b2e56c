"""Simulated runs with a known truth for benchmarks/decisions.py: Proposition 3.1 shapes (docs/theory.md §2) with
multiplicative AR(1) noise and, optionally, external data (§3: U_v <- U_v / (1 + gamma eta_t) before round t's
update). Vectorised over runs; numpy only."""
from __future__ import annotations

import numpy as np


def models(rng: np.random.Generator, B: int, small_share: float = 0.2) -> dict[str, np.ndarray]:
    """True parameters of B runs: rates 0.1-0.7, limits 1.2-5; a `small_share` of runs has a small alpha' (already
    near its plateau at round 0: the flat-series path)."""
    U_v_inf = rng.uniform(1.0, 4.0, B)
    G_inf = rng.uniform(0.2, 1.0, B)
    small = rng.random(B) < small_share
    ap = np.where(small, rng.uniform(0.02, 0.2, B), rng.uniform(1.0, 3.0, B))
    return {"rate": rng.uniform(0.1, 0.7, B), "alpha_prime": ap, "beta_prime": ap * rng.uniform(0.2, 0.6, B),
            "U_s_inf": U_v_inf + G_inf, "U_v_inf": U_v_inf, "small": small}


def ar1(rng: np.random.Generator, B: int, n: int, rho: float) -> np.ndarray:
    """Stationary AR(1) standard normal noise, (B, n)."""
    e = rng.standard_normal((B, n))
    z = np.empty_like(e)
    z[:, 0] = e[:, 0]
    for i in range(1, n):
        z[:, i] = rho * z[:, i - 1] + np.sqrt(1 - rho * rho) * e[:, i]
    return z


def paths(m: dict, n: int, jumps: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Clean U_s, U_v (B, n) and the true remaining gain after each round (what U_s still falls when no more
    external data comes): round by round, the excess gap decays by e^{-r}; jumps (B, n) = gamma eta_t."""
    B = m["rate"].size
    delta = m["alpha_prime"] - m["beta_prime"]
    a = m["alpha_prime"] / delta
    G_inf = m["U_s_inf"] - m["U_v_inf"]
    S, V = np.empty((B, n)), np.empty((B, n))
    s, v = m["alpha_prime"] + m["U_s_inf"], m["beta_prime"] + m["U_v_inf"]
    keep = np.exp(-m["rate"])
    for t in range(n):
        S[:, t], V[:, t] = s, v
        if jumps is not None:
            v = v / (1 + jumps[:, t])
        closed = (s - v - G_inf) * (1 - keep)
        s, v = s - a * closed, v - (a - 1) * closed
    gain = a[:, None] * (S - V - G_inf[:, None])
    return S, V, gain


def external_jumps(rng: np.random.Generator, B: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """gamma eta_t of 0.05-0.15 on rounds 1..last (last 2-5), and pending[t]: data still to come after round t is
    measured (round t itself or later gets some)."""
    last = rng.integers(2, 6, B)
    t = np.arange(n)[None, :]
    jumps = np.where((t >= 1) & (t <= last[:, None]), rng.uniform(0.05, 0.15, (B, 1)), 0.0)
    return jumps, t <= last[:, None]


def noisy(rng: np.random.Generator, S: np.ndarray, V: np.ndarray, sigma: float, rho: float):
    """Measured series: multiplicative AR(1) noise of relative size sigma, independent between U_s and U_v."""
    B, n = S.shape
    return S * (1 + sigma * ar1(rng, B, n, rho)), V * (1 + sigma * ar1(rng, B, n, rho))


def sweep(rng: np.random.Generator, sigma: float, rho: float, K: int = 6, n_max: int = 12):
    """One sweep of K trials measured at the same rounds, true limits within 15 % of each other, a quarter of the
    trials near their plateau from round 0 (the flat path): (U_s (K, N), U_v (K, N), index of the trial with the
    best true limit, N)."""
    m = models(rng, K, small_share=0.25)
    base = rng.uniform(1.5, 4.0)
    m["U_s_inf"] = base * (1 + rng.uniform(0, 0.15, K))
    m["U_v_inf"] = m["U_s_inf"] - rng.uniform(0.2, 1.0, K)
    N = int(rng.integers(6, n_max + 1))
    S, V, _ = paths(m, N)
    Sn, Vn = noisy(rng, S, V, sigma, rho)
    return Sn, Vn, int(np.argmin(m["U_s_inf"])), N
