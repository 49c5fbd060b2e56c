"""THEORY §2-§3 as code: closed forms (model), joint fit with CIs and early prediction (fit), external-data
allocation (allocation). numpy/scipy only: no Ray, no MLflow."""
from orchestrator.theory.allocation import (STRATEGIES, AllocationOutcome, GammaFit, Plan, check_shares, fit_gamma,
                                            plan, simulate, strategy_shares)
from orchestrator.theory.fit import FitResult, check_series, fit_gap
from orchestrator.theory.model import GapModel

__all__ = ["GapModel", "FitResult", "fit_gap", "check_series", "STRATEGIES", "AllocationOutcome", "GammaFit", "Plan",
           "check_shares", "fit_gamma", "plan", "simulate", "strategy_shares"]
