"""The controller's online fit and stop rule (THEORY §2 as the run goes), on round records from known dynamics, with
a real sqlite MLflow run and the real run folder: what is logged at which step, and when the rule stops a run."""
from __future__ import annotations

import json

import pytest

from orchestrator import config, tracking
from orchestrator.experiment import Experiment, ExperimentResult, RunFiles
from orchestrator.round import RoundRecord
from orchestrator.scheduler import Scheduler
from orchestrator.theory.model import GapModel

TRUE = GapModel(rate=0.6, alpha_prime=0.8, beta_prime=0.3, U_s_inf=0.9, U_v_inf=0.75)


def record(t: int) -> RoundRecord:
    s, v, g = (float(x) for x in TRUE.predict(t))
    return RoundRecord(t, t, {"U_s": s, "U_v": v, "G": g, "U_s_per_token": s / 4, "U_v_per_token": v / 4}, {}, {})


def drive(tmp_path, overrides: list[str], rounds: int, scheduler=None):
    """Feed rounds 0..rounds-1 to Experiment._fit as the controller does; returns (t of the stop or None, ...)."""
    cfg = config.load(None, [f"rounds={rounds + 2}", *overrides])
    exp = Experiment(cfg, progress=lambda s: None)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    logger = tracking.RunLogger(uri, "online", None, {})
    files = RunFiles(tmp_path / "run")
    files.prepare("")
    result = ExperimentResult(logger.run_id, uri, files.root, [])
    for t in range(rounds):
        result.records.append(record(t))
        stop = exp._fit(t, result, logger, files, scheduler)
        if stop:
            return t, stop, result, logger, files
    return None, None, result, logger, files


def test_fit_from_the_fourth_round_logged_at_its_step(tmp_path):
    t_stop, _, result, logger, files = drive(tmp_path, [], rounds=6)
    assert t_stop is None and sorted(result.fits) == [3, 4, 5]
    logged = tracking.run_metrics(logger.run_id, logger.uri)
    assert sorted(logged["fit/rate"]) == [3, 4, 5]
    assert logged["fit/rate"][5] == pytest.approx(TRUE.rate, rel=1e-3)
    assert logged["fit/U_s_inf"][5] == pytest.approx(TRUE.U_s_inf, abs=1e-3)
    assert logged["fit/G_inf"][5] == pytest.approx(TRUE.G_inf, abs=1e-3)
    assert logged["fit/r2_U_s"][5] > 0.999
    saved = json.loads((files.root / "fits" / "round_005.json").read_text())
    assert saved["fitted_on"]["rounds"] == [0, 1, 2, 3, 4, 5] and saved["quantity"] == "total"
    assert "fits/round_005.json" in tracking.artifact_paths(logger.run_id, uri=logger.uri)


def test_per_token_fit_says_so(tmp_path):
    _, _, result, _, _ = drive(tmp_path, ["fit.quantity=per_token"], rounds=5)
    assert result.fits[4]["fitted_on"]["quantity"] == "per_token" == result.fits[4]["quantity"]
    assert result.fits[4]["U_s_inf"] == pytest.approx(TRUE.U_s_inf / 4, abs=1e-3)


def test_stop_rule_fires_when_the_predicted_gain_is_small(tmp_path):
    # U_s(t) - U_s,inf = 0.8 e^{-0.6 t}: 0.132 at t=3, 0.073 at t=4, 0.040 at t=5
    t_stop, why, *_ = drive(tmp_path, ["stop.when_predicted_gain_below=0.05"], rounds=8)
    assert t_stop == 5 and "predicted remaining gain U_s(5) - U_s,inf = 0.0398 < 0.05" in why


def test_stop_rule_waits_while_external_data_is_left(tmp_path):
    cfg = config.load(None, ["rounds=10", "external.strategy=late", "external.budget=10"])
    sched = Scheduler(cfg, [])  # counts only: the rule looks at what is still to be handed out
    t_stop, _, *_ = drive(tmp_path, ["stop.when_predicted_gain_below=0.05"], rounds=8, scheduler=sched)
    assert sched.remaining == 10 and t_stop is None
