"""Joint fit of the solver and verifier uncertainty series with one shared rate (docs/theory.md §2).

Why this method: given the rate r, both curves U = A e^{-rt} + C are linear in (A, C), so the 5-parameter least
squares reduces to a 1-D search over r with the linear parameters profiled out (variable projection). The search is
a log-spaced grid (many starts, no local-minimum traps) refined three times, vectorised over bootstrap replicates,
so one fit with 200 bootstrap replicates takes milliseconds and can run after every round.

Confidence intervals: residual bootstrap over rounds that re-fits every replicate. Residuals are relative
(U/fitted - 1: measured uncertainties scatter in proportion to their size, and early rounds are larger), the
(U_s, U_v) residual pair of a round is resampled together, keeping their correlation, and residuals are inflated by
sqrt(2n/(2n-5)) for the fitted parameters. Percentile intervals are then widened around the estimate by
t(n-3)/z: each series' residual spread is itself estimated from n points and 3 parameters (A, C, the shared r).
Chosen by measuring (benchmarks/fit_coverage.py: 300 synthetic runs, 9-11 rounds, 1-2 % multiplicative noise):
the former additive residuals with a t(2n-5)/z widening covered the rate 86 %, alpha' 84 %, U_s,inf 91 %; this
method covers every interval at 93-97 % (docs/theory.md §6). Early prediction: fit rounds 0..K only (`first=K`)
and, when later rounds exist, backtest; `backtest_table` does it for every K.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from scipy import stats

from orchestrator.errors import SvgapError
from orchestrator.theory import verdicts as vd
from orchestrator.theory.model import GapModel
from orchestrator.theory.result import BOOT_COLUMNS, NUMBERS, FitResult, _num  # noqa: F401  (re-exported)

MIN_ROUNDS = 4
R_MAX = 5.0  # per round: beyond this the whole decay happens within one round and r is not identifiable
CI_NAMES = ("rate", "alpha_prime", "beta_prime", "delta", "U_s_inf", "U_v_inf", "G_inf", "alpha_over_beta",
            "sensitivity", "rounds_to_eps")
DECAYING = vd.DECAYING
BACKTEST_FROM = 4  # the backtest table starts with rounds 0..4


def check_series(rounds: Sequence, U_s: Sequence, U_v: Sequence) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validate one run's series; every problem is a one-line SvgapError that names it."""
    if not (len(rounds) == len(U_s) == len(U_v)):
        raise SvgapError(f"rounds, U_s and U_v have different lengths ({len(rounds)}, {len(U_s)}, {len(U_v)})")
    cols = {}
    for name, seq in (("round", rounds), ("U_s", U_s), ("U_v", U_v)):
        vals = []
        for i, v in enumerate(seq):
            try:
                if isinstance(v, bool):
                    raise TypeError
                f = float(v)
            except (TypeError, ValueError):
                raise SvgapError(f"{name} value #{i} is not a number: {v!r}") from None
            if not math.isfinite(f):
                where = f"at round {rounds[i]}" if name != "round" else f"#{i}"
                raise SvgapError(f"{name} {where} is not finite ({f})")
            vals.append(f)
        cols[name] = np.asarray(vals, dtype=float)
    t = cols["round"]
    bad = [x for x in t if x != int(x) or x < 0]
    if bad:
        raise SvgapError(f"round {bad[0]:g} is not a non-negative integer")
    uniq, counts = np.unique(t, return_counts=True)
    if (counts > 1).any():
        raise SvgapError(f"duplicate round {int(uniq[counts > 1][0])}")
    down = np.nonzero(np.diff(t) < 0)[0]
    if down.size:
        i = down[0]
        raise SvgapError(f"rounds are not sorted: round {int(t[i + 1])} comes after round {int(t[i])}")
    if t.size < MIN_ROUNDS:
        raise SvgapError(f"need at least {MIN_ROUNDS} rounds to fit 5 parameters on 2 series, got {t.size}")
    return t.astype(int), cols["U_s"], cols["U_v"]


def _sse(r: np.ndarray, t: np.ndarray, Sc: np.ndarray, Vc: np.ndarray, Syy: np.ndarray) -> np.ndarray:
    """Profiled joint SSE for rates r (B, R) on centred series Sc, Vc (B, n)."""
    X = np.exp(-r[..., None] * t)
    Xc = X - X.mean(-1, keepdims=True)
    Sxx = np.maximum((Xc * Xc).sum(-1), 1e-300)
    sxs = np.einsum("brn,bn->br", Xc, Sc)
    sxv = np.einsum("brn,bn->br", Xc, Vc)
    return Syy[:, None] - (sxs * sxs + sxv * sxv) / Sxx


def _fit_batch(t: np.ndarray, S: np.ndarray, V: np.ndarray, r_min: float) -> np.ndarray:
    """Least-squares parameters [r, alpha', U_s_inf, beta', U_v_inf] for each row of S, V (shape (B, n))."""
    Sc = S - S.mean(1, keepdims=True)
    Vc = V - V.mean(1, keepdims=True)
    Syy = (Sc * Sc).sum(1) + (Vc * Vc).sum(1)
    lo, hi = math.log(r_min), math.log(R_MAX)
    logr = np.broadcast_to(np.linspace(lo, hi, 97), (S.shape[0], 97))
    step = (hi - lo) / 96
    rows = np.arange(S.shape[0])
    for _ in range(3):
        best = logr[rows, np.argmin(_sse(np.exp(logr), t, Sc, Vc, Syy), axis=1)]
        logr = np.clip(best[:, None] + np.linspace(-step, step, 21), lo, hi)
        step /= 10
    # last: parabola through the three grid points around the minimum
    e = _sse(np.exp(logr), t, Sc, Vc, Syy)
    i = np.clip(np.argmin(e, axis=1), 1, logr.shape[1] - 2)
    em, e0, ep = e[rows, i - 1], e[rows, i], e[rows, i + 1]
    curv = em - 2 * e0 + ep
    with np.errstate(divide="ignore", invalid="ignore"):
        off = np.where(curv > 0, 0.5 * (em - ep) / curv, 0.0)
    x = logr[rows, i] + np.clip(off, -1, 1) * (logr[rows, i + 1] - logr[rows, i])
    r = np.exp(np.clip(x, lo, hi))
    X = np.exp(-r[:, None] * t)
    Xc = X - X.mean(1, keepdims=True)
    Sxx = np.maximum((Xc * Xc).sum(1), 1e-300)
    A_s = (Xc * Sc).sum(1) / Sxx
    A_v = (Xc * Vc).sum(1) / Sxx
    C_s = S.mean(1) - A_s * X.mean(1)
    C_v = V.mean(1) - A_v * X.mean(1)
    return np.stack([r, A_s, C_s, A_v, C_v], axis=1)


def _derived(p: np.ndarray, eps: float) -> dict[str, np.ndarray]:
    """All reported quantities from parameter rows [r, alpha', U_s_inf, beta', U_v_inf]."""
    r, ap, us, bp, uv = p.T
    delta = ap - bp
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(bp != 0, ap / bp, np.nan)
        sens = np.where(delta != 0, -bp / delta, np.nan)  # docs/theory.md §2: dU_s,inf/dG_0 = -beta/(alpha-beta)
        t_eps = np.where(np.abs(delta) > eps, np.log(np.abs(delta) / eps) / r, 0.0)
    return {"rate": r, "alpha_prime": ap, "beta_prime": bp, "delta": delta, "U_s_inf": us, "U_v_inf": uv,
            "G_inf": us - uv, "alpha_over_beta": ratio, "sensitivity": sens, "rounds_to_eps": t_eps}


def _r2(y: np.ndarray, yhat: np.ndarray) -> float | None:
    sst = float(((y - y.mean()) ** 2).sum())
    if sst <= 1e-24 * max(1.0, float((y * y).sum())):
        return None
    return 1.0 - float(((y - yhat) ** 2).sum()) / sst


def _verdict(t, S, V, p, r_min) -> str:
    """'decaying', or why the data show no decay / no identifiable limit (then no numbers are reported)."""
    n = t.size
    r, ap, us, bp, uv = p
    x = np.exp(-r * t)
    sse_s = float(((S - ap * x - us) ** 2).sum())
    sse1 = sse_s + float(((V - bp * x - uv) ** 2).sum())
    syy_s = float(((S - S.mean()) ** 2).sum())
    sse0 = syy_s + float(((V - V.mean()) ** 2).sum())
    scale = 1e-20 * max(1.0, float((S * S).sum() + (V * V).sum()))
    if sse0 <= scale:
        return f"{vd.NO_DECAY}: U_s and U_v are constant"
    s2 = max(sse1, scale) / (2 * n - 5)
    if stats.f.sf(((sse0 - sse1) / 3) / s2, 3, 2 * n - 5) > 0.01:
        return f"{vd.NO_DECAY}: U_s and U_v are flat within noise"
    # U_s alone: does its fitted curve explain significantly more than a constant?
    if stats.f.sf(max(syy_s - sse_s, 0.0) / s2, 1, 2 * n - 5) > 0.01:
        return f"{vd.NO_DECAY}: U_s is flat within noise (only U_v moves)"
    if ap <= 0:
        return f"{vd.NO_DECAY}: U_s rises over the rounds"
    if r <= r_min * 1.001:
        return f"{vd.NO_LIMIT_YET}: U_s falls with no visible slowing (rate at its lower bound); fit more rounds"
    if us < 0 or uv < 0:  # U = -log π >= 0: a negative limit is an extrapolated straight line, not a limit
        return (f"{vd.NEGATIVE_UNCERTAINTY}: the fitted limits are negative (U_s,inf {us:.3g}, U_v,inf {uv:.3g}) "
                f"and an uncertainty cannot be; U_s falls with little visible slowing; fit more rounds")
    if r >= R_MAX * 0.999:
        return (f"{vd.NO_RATE}: the whole decay happens within the first round (rate at its upper bound "
                f"{R_MAX:g}); the limit is simply the plateau already reached")
    outside = vd.model_verdict(GapModel(float(r), float(ap), float(bp), float(us), float(uv)))
    if outside is not None:  # alpha <= beta, beta < 0 or G_inf < 0: the curves fit, but the theory's model does not
        return str(outside)
    return DECAYING


def least_squares_model(rounds: Sequence[int], U_s: Sequence[float], U_v: Sequence[float]) -> GapModel:
    """The plain least-squares curves of docs/theory.md §2 with no verdict: a starting point for richer fits (γ), which
    judge their own result. Use fit_gap for anything reported."""
    t, S, V = check_series(rounds, U_s, U_v)
    r, ap, us, bp, uv = _fit_batch(t, S[None], V[None], 0.01 / max(int(t[-1] - t[0]), 1))[0]
    return GapModel(float(r), float(ap), float(bp), float(us), float(uv))


def _bootstrap(t, S, V, fs, fv, r_min: float, n_boot: int, seed: int) -> np.ndarray:
    """Re-fitted parameter rows of n_boot residual-bootstrap series (see the module docstring for the method)."""
    n = t.size
    rng = np.random.default_rng(seed)
    infl = math.sqrt(2 * n / (2 * n - 5))
    idx = rng.integers(0, n, size=(n_boot, n))
    if (fs > 0).all() and (fv > 0).all():
        rs, rv = (S / fs - 1) * infl, (V / fv - 1) * infl
        return _fit_batch(t, fs[None] * (1 + rs[idx]), fv[None] * (1 + rv[idx]), r_min)
    es, ev = (S - fs) * infl, (V - fv) * infl  # a fitted curve at or below 0: relative residuals are undefined
    return _fit_batch(t, fs[None] + es[idx], fv[None] + ev[idx], r_min)


def _intervals(d: dict, boot: np.ndarray, n: int, eps: float, level: float) -> dict[str, list]:
    """Each derived number's CI from its bootstrap spread around the point fit, widened for the small sample."""
    ci: dict[str, list] = {}
    q = 100 * (1 - level) / 2
    # small-sample widening: the bootstrap treats the residual spread as known; scale by t(n-3)/z quantiles
    widen = stats.t.ppf(1 - q / 100, n - 3) / stats.norm.ppf(1 - q / 100)
    for k, v in _derived(boot, eps).items():
        v = v[np.isfinite(v)]
        if not v.size or d[k] is None or not math.isfinite(d[k]):
            ci[k] = [None, None]
            continue
        lo, hi = d[k] - widen * (d[k] - np.percentile(v, q)), d[k] + widen * (np.percentile(v, 100 - q) - d[k])
        if k in ("rate", "rounds_to_eps", "U_s_inf", "U_v_inf", "G_inf"):
            lo = max(lo, 0.0)  # the physical bound: an uncertainty, a gap, a rate are >= 0 (docs/theory.md §2)
        ci[k] = [_num(lo), _num(hi)]
    return ci


def fit_gap(rounds: Sequence[int], U_s: Sequence[float], U_v: Sequence[float], *, first: int | None = None,
            eps: float = 0.05, n_boot: int = 200, seed: int = 0, level: float = 0.95,
            quantity: str = "total", backtest: bool = True) -> FitResult:
    """Fit Proposition 3.1 to a run's U_s and U_v per round.

    first: early prediction, fit only rounds t <= first; later rounds, if any, give the backtest
    (U_s_inf_error = this fit's U_s_inf minus the fit on all rounds; max_abs_error_U_s = largest |predicted - observed|
    U_s on the later rounds; with `backtest`, also the table of backtest_table for every K). eps: for Corollary
    3.2's rounds to eps. quantity: which uncertainty was fitted (total / per_token), recorded in fitted_on.
    """
    if not (isinstance(eps, (int, float)) and math.isfinite(eps) and eps > 0):
        raise SvgapError(f"eps must be a positive number, got {eps!r}")
    if not 0 < level < 1:
        raise SvgapError(f"CI level must be in (0, 1), got {level}")
    t_all, S_all, V_all = check_series(rounds, U_s, U_v)
    keep = np.ones(t_all.size, bool) if first is None else t_all <= first
    if first is not None and keep.sum() < MIN_ROUNDS:
        raise SvgapError(f"--first {first} keeps {int(keep.sum())} rounds; need at least {MIN_ROUNDS}")
    t, S, V = t_all[keep], S_all[keep], V_all[keep]
    n = t.size
    r_min = 0.01 / max(int(t[-1] - t[0]), 1)
    p = _fit_batch(t, S[None], V[None], r_min)[0]
    verdict = _verdict(t, S, V, p, r_min)
    fitted_on = {"rounds": [int(x) for x in t], "quantity": quantity}
    later = ~keep
    if verdict != DECAYING:
        bt = None
        if later.any():
            bt = {"U_s_inf_error": None, "max_abs_error_U_s": None}
            if backtest:
                bt["table"] = backtest_table(t_all, S_all, V_all, eps=eps, n_boot=n_boot, seed=seed, level=level)
        return FitResult(None, None, None, None, None, None, None, None, r2={"U_s": None, "U_v": None, "G": None},
                         rounds_to_eps={"eps": eps, "rounds": None}, ci={}, n_rounds=n, fitted_on=fitted_on,
                         verdict=verdict, backtest=bt, ci_level=level)
    d = {k: float(v[0]) for k, v in _derived(p[None], eps).items()}
    model = GapModel(d["rate"], d["alpha_prime"], d["beta_prime"], d["U_s_inf"], d["U_v_inf"])
    fs, fv, fg = model.predict(t)
    ci, boot = {}, None
    if n_boot > 0:
        boot = _bootstrap(t, S, V, fs, fv, r_min, n_boot, seed)
        ci = _intervals(d, boot, n, eps, level)
    bt = None
    if later.any():
        full = fit_gap(t_all, S_all, V_all, eps=eps, n_boot=0, quantity=quantity)
        bt = {"U_s_inf_error": None if full.U_s_inf is None else d["U_s_inf"] - full.U_s_inf,
              "max_abs_error_U_s": float(np.max(np.abs(model.U_s(t_all[later]) - S_all[later])))}
        if backtest:
            bt["table"] = backtest_table(t_all, S_all, V_all, eps=eps, n_boot=n_boot, seed=seed, level=level)
    return FitResult(
        **{k: _num(d[k]) for k in NUMBERS},
        r2={"U_s": _r2(S, fs), "U_v": _r2(V, fv), "G": _r2(S - V, fg)},
        rounds_to_eps={"eps": eps, "rounds": d["rounds_to_eps"]}, ci=ci, n_rounds=n, fitted_on=fitted_on,
        verdict=verdict, backtest=bt, ci_level=level, boot=boot)


def backtest_table(rounds: Sequence[int], U_s: Sequence[float], U_v: Sequence[float], *, eps: float = 0.05,
                   n_boot: int = 200, seed: int = 0, level: float = 0.95) -> list[dict]:
    """The paper's early-prediction claim checked on one run: for every K from BACKTEST_FROM to the last round, the
    limit U_s,inf fitted on rounds 0..K (with its CI) next to the one fitted on all rounds. A K whose fit has no
    limit gives its verdict instead of numbers; `error` = U_s,inf(0..K) - U_s,inf(all)."""
    t, S, V = check_series(rounds, U_s, U_v)
    full = fit_gap(t, S, V, eps=eps, n_boot=0, backtest=False)
    rows = []
    for k in range(max(BACKTEST_FROM, int(t[0]) + MIN_ROUNDS - 1), int(t[-1]) + 1):
        if int((t <= k).sum()) < MIN_ROUNDS:
            continue
        f = fit_gap(t, S, V, first=k, eps=eps, n_boot=n_boot, seed=seed, level=level, backtest=False)
        err = None if f.U_s_inf is None or full.U_s_inf is None else f.U_s_inf - full.U_s_inf
        rows.append({"first": k, "n_rounds": f.n_rounds, "U_s_inf": f.U_s_inf,
                     "ci": list(f.ci.get("U_s_inf") or [None, None]), "U_s_inf_all": full.U_s_inf,
                     "error": _num(err), "verdict": f.verdict if not f.decaying else DECAYING})
    return rows
