"""The round's numbers and base-model evaluation's come from the same pure functions (run/metrics.py)."""
from __future__ import annotations

import math

import pytest

from orchestrator.run.metrics import mean, pick_metrics, solver_metrics
from orchestrator.run.selection import BoNPick


def test_solver_and_pick_metrics_by_hand():
    nll = [[2.0, 4.0], [1.0, 3.0]]
    lengths = [[2, 4], [0, 3]]  # a zero length counts as 1 per token
    correct = [[True, False], [False, False]]
    capped = [[False, True], [False, False]]
    s = solver_metrics(nll, lengths, correct, capped)
    assert s == pytest.approx({"U_s": 2.5, "U_s_per_token": (1 + 1 + 1 + 1) / 4, "len_s": 2.25, "acc_s": 0.25,
                               "pass_at_n": 0.5, "capped_share": 0.25})
    picks = [BoNPick(1, False), BoNPick(0, True)]
    v = pick_metrics(nll, lengths, correct, capped, picks)
    assert v == pytest.approx({"U_v": 2.5, "U_v_per_token": 1.0, "len_v": 2.0, "acc_v": 0.0,
                               "capped_share_v": 0.5, "fallback_rate": 0.5})


def test_nothing_to_average_is_nan_not_an_error():
    assert math.isnan(mean([]))
    assert all(math.isnan(v) for v in solver_metrics([], [], [], []).values())
    assert math.isnan(pick_metrics([], [], [], [], [])["U_v"])
