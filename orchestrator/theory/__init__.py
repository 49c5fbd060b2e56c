"""docs/theory.md §2-§5 as code: closed forms (model), joint fit with CIs and early prediction (fit), external-data
allocation (allocation), gamma (gamma), plan intervals (intervals), the verdict words (verdicts), synthetic runs
with a known truth (synthetic). numpy/scipy only: no Ray, no MLflow."""
from orchestrator.theory.allocation import (STRATEGIES, AllocationOutcome, Plan, check_shares, plan, simulate,
                                            strategy_shares)
from orchestrator.theory.fit import FitResult, backtest_table, check_series, fit_gap
from orchestrator.theory.gamma import GammaFit, fit_gamma
from orchestrator.theory.intervals import propagate
from orchestrator.theory.model import GapModel
from orchestrator.theory.verdicts import NoPrediction, Verdict

__all__ = ["GapModel", "FitResult", "fit_gap", "backtest_table", "check_series", "STRATEGIES", "AllocationOutcome",
           "GammaFit", "Plan", "check_shares", "fit_gamma", "plan", "propagate", "simulate", "strategy_shares",
           "NoPrediction", "Verdict"]
