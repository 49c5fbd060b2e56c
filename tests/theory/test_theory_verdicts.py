"""Issue 16 item 1: every path a prediction leaves the theory engine by gives a verdict, never a number, on each
impossible case -- simulate / plan, the joint and the given-model gamma fit, the online fit's limit through the rest
of an allocation and the stop rule, the allocation table, the report, and `svgap fit` / `svgap plan`.

The cases are made from data: series simulated (jumps included) from a model that has the defect, so the joint fit
finds it the way it would in a real run."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from orchestrator import config

from orchestrator.store import mirror, tracking
from orchestrator.studies.allocation import summarize, to_markdown, variant
from orchestrator.studies.variants import Outcome
from orchestrator.cli import main
from orchestrator.run.online_fit import OnlineFit
from orchestrator.report.html import render
from orchestrator.store.keep import keep_fit
from orchestrator.store.records import RoundRecord
from orchestrator.store.run_store import RunFiles
from orchestrator.run.scheduler import Scheduler
from orchestrator.theory import verdicts as vd
from orchestrator.theory.allocation import _run, plan, simulate
from orchestrator.theory.gamma import fit_gamma
from orchestrator.theory.model import GapModel
from stores import sqlite_uri

OK = GapModel(0.5, 3.0, 1.0, 4.0, 3.0)
ISSUE = GapModel(0.3, 0.76, 0.5, 0.7, 0.5)  # issue 16's example: gamma 1, T 5 -> early "U_s,inf = -0.64"
BAD_MODELS = {  # a model with the defect -> the verdict word every path must give
    "delta <= 0": (GapModel(0.5, 1.0, 1.4, 3.0, 1.0), vd.OUTSIDE_THEORY),
    "beta' < 0": (GapModel(0.5, 2.0, -0.4, 3.0, 2.0), vd.OUTSIDE_THEORY),
    "G_inf < 0": (GapModel(0.5, 3.0, 1.0, 2.0, 2.4), vd.NEGATIVE_GAP),
    "negative limit": (GapModel(0.1, 6.0, 2.0, -1.0, -1.5), vd.NEGATIVE_UNCERTAINTY),
}
ETA = {t: (0.25 if t in (3, 4, 5, 6) else 0.0) for t in range(10)}  # uniform over rounds 3..6 of 10 records
DATA_CASES = {  # series whose joint gamma fit has no physical result -> its verdict word
    **{k: (m, 0.5, w) for k, (m, w) in BAD_MODELS.items()},
    "gamma at its bound": (OK, 1e5, vd.AT_BOUND),
}


def series(model: GapModel, gamma: float) -> tuple[list[int], list[float], list[float]]:
    s, v, _, _ = _run(model, gamma, [ETA[t] for t in range(9)], float(model.U_s(0)), float(model.U_v(0)))
    return list(range(10)), s, v


def word(text) -> str | None:
    return vd.word_of(str(text))


# ---- theory: simulate, plan, fit_gamma -----------------------------------------------------------------------------
@pytest.mark.parametrize("case", list(BAD_MODELS))
def test_simulate_and_plan_of_an_impossible_model(case):
    model, expect = BAD_MODELS[case]
    out = simulate(model, 0.5, [0.5, 0.5, 0.0])
    assert out.U_s_inf is None and out.U_s_T is None and word(out.verdict) == expect
    p = plan(model, 0.5, 3)
    assert p.best is None and word(p.verdict) == expect
    assert all(o.U_s_inf is None for o in [*p.outcomes.values(), p.baseline])
    assert "null" in json.dumps(p.to_json()) and word(p.to_json()["verdict"]) == expect


def test_the_issue_example_is_a_verdict_not_minus_0_64():
    p = plan(ISSUE, 1.0, 5)
    early = p.outcomes["early"]
    assert early.U_s_inf is None and word(early.verdict) == vd.NEGATIVE_UNCERTAINTY and "-0.636" in early.verdict
    assert p.best is None and word(p.verdict) == vd.NEGATIVE_UNCERTAINTY
    # a smaller gamma is physical for some allocations: only those are ranked
    q = plan(ISSUE, 0.3, 5)
    ranked = [k for k, o in q.outcomes.items() if o.verdict is None]
    assert q.best in ranked and all(q.outcomes[k].U_s_inf >= 0 for k in ranked)


@pytest.mark.parametrize("case", list(DATA_CASES))
def test_joint_gamma_fit_gives_the_verdict(case):
    model, gamma, expect = DATA_CASES[case]
    with pytest.raises(vd.NoPrediction) as e:
        fit_gamma(*series(model, gamma), ETA)
    assert e.value.verdict.word == expect


def test_gamma_fit_failed_optimizer_and_given_model_cases():
    t, s, v = series(OK, 0.5)
    for model in (None, OK):
        with pytest.raises(vd.NoPrediction) as e:
            fit_gamma(t, s, v, ETA, model=model, max_nfev=1)
        assert e.value.verdict.word == vd.FIT_FAILED
    with pytest.raises(vd.NoPrediction) as e:  # the given model is outside the theory
        fit_gamma(t, s, v, ETA, model=BAD_MODELS["delta <= 0"][0])
    assert e.value.verdict.word == vd.OUTSIDE_THEORY
    with pytest.raises(vd.NoPrediction) as e:  # gamma pinned at the top of its grid with the true model given
        fit_gamma(*series(OK, 1e5), ETA, model=OK)
    assert e.value.verdict.word == vd.AT_BOUND
    assert fit_gamma(t, s, v, ETA).gamma == pytest.approx(0.5, rel=1e-4)  # the control: a physical run fits


# ---- the online fit and the stop rule ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def uri(tmp_path_factory) -> str:
    return sqlite_uri(tmp_path_factory.mktemp('mlflow') / 'mlflow.db')


def _online(uri, t_series, s, v, eta, future_strategy="uniform"):
    cfg = config.load(None, ["rounds=12", "external.strategy=" + future_strategy, "external.budget=12",
                             "stop.when_predicted_gain_below=1000"])  # would stop at once on any limit
    sched = Scheduler(cfg, [])
    sched.used = sched.budget  # nothing left to hand out: only the limit can hold the stop rule back
    online = OnlineFit(cfg)
    logger = mirror.RunLogger(uri, "verdicts", None, {})
    recs = [RoundRecord(t, t, {"U_s": s[i], "U_v": v[i], "external/eta": eta.get(t, 0.0)}, {}, {})
            for i, t in enumerate(t_series)]
    data, stop = online.after_round(t_series[-1], recs, sched)
    if data is not None:  # kept as the controller keeps it (store/keep.py)
        files = RunFiles(Path(uri.removeprefix("sqlite:///")).parent / logger.run_id)
        files.prepare(config.dump(cfg))
        keep_fit(files, logger, t_series[-1], data)
    return data, stop, tracking.run_metrics(logger.run_id, logger.uri)


@pytest.mark.parametrize("case", list(DATA_CASES))
def test_online_fit_logs_the_verdict_and_never_stops_on_it(uri, case):
    model, gamma, expect = DATA_CASES[case]
    data, stop, logged = _online(uri, *series(model, gamma), ETA)
    assert word(data["external"]["verdict"]) == expect and data["external"]["U_s_inf"] is None
    assert "fit/U_s_inf_external" not in logged and stop is None


def test_online_fit_limit_through_an_impossible_rest_of_allocation(uri):
    eta = {t: (0.25 if t in (3, 4, 5, 6) else 0.0) for t in range(10)}
    t, s, v = series(ISSUE, 1.0)
    data, stop, logged = _online(uri, t, s, v, eta, future_strategy="late")  # late: the jumps are still ahead
    ext = data["external"]
    assert ext["gamma"] == pytest.approx(1.0, rel=1e-3)  # the fit itself is physical ...
    assert word(ext["verdict"]) == vd.NEGATIVE_UNCERTAINTY and ext["U_s_inf"] is None  # ... the limit is not
    assert "fit/U_s_inf_external" not in logged and stop is None


# ---- the allocation table ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", list(DATA_CASES))
def test_allocation_table_shows_the_verdict(case):
    model, gamma, expect = DATA_CASES[case]
    cfg = config.load(None, ["rounds=9", "external.budget=12", "seed=0"])
    t, s, v = series(model, gamma)
    recs = [RoundRecord(r, r, {"U_s": s[r], "U_v": v[r], "heldout_acc": 0.5, "external/eta": ETA[r]}, {}, {})
            for r in t]
    table = summarize([Outcome(variant("uniform", 0, cfg), run_id="u0", records=recs)], cfg)
    row = table["rows"][0]
    assert row["U_s_inf"] is None and row["gamma"] is None and row["verdicts"] == [expect]
    assert f"{expect} (1 of 1 seeds)" in to_markdown(table)
    assert any(n.startswith("gamma of uniform seed 0: " + expect) for n in table["summary"]["notes"])


# ---- the report ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", ["delta <= 0", "gamma at its bound"])
def test_report_shows_the_verdict(tmp_path, case):
    model, gamma, expect = DATA_CASES[case]
    t, s, v = series(model, gamma)
    files = render({"U_s": dict(zip(t, s)), "U_v": dict(zip(t, v)), "external/eta": ETA}, tmp_path, title=case,
                   n_boot=20)
    page = files.html.read_text()
    assert f"gamma not fitted: {expect}" in page and "with the data this run used" not in page


# ---- the CLI: svgap fit and svgap plan -----------------------------------------------------------------------------
def _csv(path, model: GapModel, n: int = 10) -> str:
    path.write_text("round,U_s,U_v\n" + "".join(f"{t},{model.U_s(t)},{model.U_v(t)}\n" for t in range(n)))
    return str(path)


@pytest.mark.parametrize("case", list(BAD_MODELS))
def test_fit_and_plan_cli_print_the_verdict(tmp_path, capsys, case):
    model, expect = BAD_MODELS[case]
    path = _csv(tmp_path / "r.csv", model)
    assert main(["fit", "--csv", path, "--json"]) == 0
    j = json.loads(capsys.readouterr().out)
    assert word(j["verdict"]) == expect and j["U_s_inf"] is None and j["rate"] is None
    (tmp_path / "fit.json").write_text(json.dumps(j))
    assert main(["plan", "--fit", str(tmp_path / "fit.json"), "--gamma", "0.5", "--rounds", "4", "--json"]) == 0
    p = json.loads(capsys.readouterr().out)
    assert word(p["verdict"]) == expect and p["best"] is None
    assert all(o["U_s_inf"] is None for o in p["strategies"].values())


def test_plan_cli_on_the_issue_example(tmp_path, capsys):
    assert main(["plan", "--csv", _csv(tmp_path / "r.csv", ISSUE), "--gamma", "1", "--rounds", "5"]) == 0
    out = capsys.readouterr().out
    assert "negative uncertainty" in out and "-0.64" not in out.replace("-0.636", "") and "<- best" not in out
    assert not any(math.isfinite(float(x)) and float(x) < 0 for x in out.split() if _is_number(x))


def _is_number(x: str) -> bool:
    try:
        float(x)
    except ValueError:
        return False
    return True
