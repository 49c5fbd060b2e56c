"""One fit's result (docs/theory.md §2-§3): the numbers or the verdict, CIs, R², the backtest and the bootstrap
rows that `svgap plan` propagates; to and from the JSON of `svgap fit --json`. numpy only."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from orchestrator.errors import SvgapError
from orchestrator.theory import verdicts as vd
from orchestrator.theory.model import GapModel

DECAYING = vd.DECAYING


def _num(x) -> float | None:
    """JSON-safe float: None for missing or non-finite."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


NUMBERS = ("rate", "alpha_prime", "beta_prime", "delta", "U_s_inf", "U_v_inf", "G_inf", "alpha_over_beta",
           "sensitivity")
BOOT_COLUMNS = ("rate", "alpha_prime", "U_s_inf", "beta_prime", "U_v_inf")


def _boot_from_json(data) -> np.ndarray | None:
    """Bootstrap rows saved by to_json; a malformed block is a one-line error."""
    if data is None:
        return None
    if not isinstance(data, dict) or list(data.get("columns") or []) != list(BOOT_COLUMNS):
        raise SvgapError(f"fit JSON bootstrap must be {{columns: {list(BOOT_COLUMNS)}, rows: [...]}}")
    try:
        rows = np.asarray(data.get("rows") or [], dtype=float)
    except (TypeError, ValueError):
        raise SvgapError("fit JSON bootstrap rows must be lists of 5 numbers") from None
    if rows.size and (rows.ndim != 2 or rows.shape[1] != len(BOOT_COLUMNS)):
        raise SvgapError("fit JSON bootstrap rows must be lists of 5 numbers")
    return rows.reshape(-1, len(BOOT_COLUMNS)) if rows.size else None


@dataclass
class FitResult:
    """One fit of docs/theory.md §2 on a run's rounds. Parameters are None when the verdict is not 'decaying'."""

    rate: float | None
    alpha_prime: float | None
    beta_prime: float | None
    delta: float | None
    U_s_inf: float | None
    U_v_inf: float | None
    G_inf: float | None
    alpha_over_beta: float | None
    r2: dict
    rounds_to_eps: dict
    ci: dict
    n_rounds: int
    fitted_on: dict
    verdict: str
    backtest: dict | None = None
    ci_level: float = 0.95
    boot: np.ndarray | None = field(default=None, repr=False)  # bootstrap rows [r, alpha', U_s_inf, beta', U_v_inf]
    sensitivity: float | None = None  # docs/theory.md §2: dU_s,inf/dG_0 at fixed U_v(0) = -beta/(alpha-beta) = -beta'/delta

    @property
    def decaying(self) -> bool:
        return self.verdict.startswith(DECAYING)

    @property
    def model(self) -> GapModel:
        if not self.decaying:
            raise SvgapError(f"no fitted model: {self.verdict}")
        return GapModel(self.rate, self.alpha_prime, self.beta_prime, self.U_s_inf, self.U_v_inf)

    def predict(self, t):
        """(U_s(t), U_v(t), G(t)) from the fitted curves."""
        return self.model.predict(t)

    def band(self, t, level: float | None = None) -> dict[str, tuple[np.ndarray, np.ndarray]] | None:
        """Pointwise bootstrap band {U_s|U_v|G: (lo, hi)} of the fitted curves at rounds t (None without boot)."""
        if self.boot is None or not len(self.boot) or not self.decaying:
            return None
        q = 100 * (1 - (level or self.ci_level)) / 2
        x = np.exp(-self.boot[:, :1] * np.asarray(t, float)[None, :])
        curves = {"U_s": self.boot[:, 1:2] * x + self.boot[:, 2:3], "U_v": self.boot[:, 3:4] * x + self.boot[:, 4:5]}
        curves["G"] = curves["U_s"] - curves["U_v"]
        return {k: (np.nanpercentile(c, q, axis=0), np.nanpercentile(c, 100 - q, axis=0)) for k, c in curves.items()}

    def to_json(self) -> dict:
        out = {k: _num(getattr(self, k)) for k in NUMBERS}
        out.update(r2=dict(self.r2), rounds_to_eps=dict(self.rounds_to_eps), ci={k: list(v) for k, v in self.ci.items()},
                   n_rounds=self.n_rounds, fitted_on=dict(self.fitted_on))
        if self.backtest is not None:
            out["backtest"] = dict(self.backtest)
        out["verdict"] = self.verdict
        if self.boot is not None and len(self.boot):  # what `svgap plan --fit` propagates into its intervals
            out["bootstrap"] = {"columns": list(BOOT_COLUMNS),
                                "rows": [[float(x) for x in row] for row in self.boot]}
        return out

    @classmethod
    def from_json(cls, data: dict) -> "FitResult":
        """Rebuild a fit saved with to_json (e.g. `svgap fit --json > fit.json`; `svgap plan --fit fit.json`)."""
        if not isinstance(data, dict):
            raise SvgapError("fit JSON must be an object with the keys of `svgap fit --json`")
        need = ("rate", "alpha_prime", "beta_prime", "U_s_inf", "U_v_inf", "verdict")
        missing = [k for k in need if k not in data]
        if missing:
            raise SvgapError(f"fit JSON lacks key(s) {', '.join(missing)}")
        vals = {}
        for k in NUMBERS:
            v = data.get(k)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)):
                raise SvgapError(f"fit JSON key {k} is not a finite number: {v!r}")
            vals[k] = None if v is None else float(v)
        if str(data["verdict"]).startswith(DECAYING) and any(vals[k] is None for k in need[:-1]):
            raise SvgapError("fit JSON says 'decaying' but has null parameters")
        if vals["rate"] is not None and vals["rate"] <= 0:
            raise SvgapError(f"fit JSON rate must be > 0, got {vals['rate']}")
        return cls(**vals, r2=dict(data.get("r2") or {}), rounds_to_eps=dict(data.get("rounds_to_eps") or {}),
                   ci=dict(data.get("ci") or {}), n_rounds=int(data.get("n_rounds") or 0),
                   fitted_on=dict(data.get("fitted_on") or {}), verdict=str(data["verdict"]),
                   backtest=data.get("backtest"), boot=_boot_from_json(data.get("bootstrap")))
