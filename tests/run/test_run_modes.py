"""Every run mode end to end (issue 15 item 3): one real small experiment each -- real local Ray, real sqlite
MLflow, the real cached base model -- asserting what the mode promises, not only that it ran.

Sizes are the smallest that still exercise the mode: 32 prompts x 4 candidates, 16 held-out prompts, one epoch
-- except where the mode needs the gap fit to see a decay (the stop rule, `planned`): those keep the default
256 prompts x 8 candidates, whose U_s falls clearly enough for a fit within 5 measured rounds (4 are the minimum
the fit accepts; on 4 it mostly reads this model's rounds as noise).
"""
from __future__ import annotations

import json
import math
import re

import pytest

from orchestrator import config

from orchestrator.store import tracking
from orchestrator.cli import main
from orchestrator.run.experiment import Experiment
from stores import sqlite_uri

pytestmark = pytest.mark.slow


TINY = ("workload.train_prompts=32", "generation.n=4", "training.epochs=1")


def overrides(tmp_path, base_model_dir, *extra: str) -> list[str]:
    return ["workload.heldout_prompts=16", f"tracking.out_dir={tmp_path / 'runs'}", f"model.path={base_model_dir}",
            *extra]


def uri_for(tmp_path) -> str:
    return sqlite_uri(tmp_path / 'mlflow.db')


def run(tmp_path, base_model_dir, *extra: str):
    cfg = config.load(None, overrides(tmp_path, base_model_dir, *extra))
    return Experiment(cfg, tracking_uri=uri_for(tmp_path)).run()


def picks(res, t: int) -> list[dict]:
    return [json.loads(x) for x in (res.out_dir / "picks" / f"round_{t:03d}.jsonl").read_text().splitlines()]


def test_stop_rule_ends_the_run_before_training_past_the_stop(local_ray, base_model_dir, tmp_path, capsys):
    """stop.when_predicted_gain_below (a large threshold): from round 3 on the rule decides each round on the upper
    bound of the predicted remaining gain (theory/decision.py); the first `stop` leaves that round's model as the
    result: nothing trained after it, the tag and the CLI say why. `svgap fit --run FOLDER --stop-below` takes the
    run's decision on the same rounds, every round (its cheap twin: tests/commands/test_fit_stop_folder.py)."""
    argv = ["run", "--tracking-uri", uri_for(tmp_path)]
    for o in overrides(tmp_path, base_model_dir, "rounds=6", "stop.when_predicted_gain_below=100"):
        argv += ["--set", o]
    assert main(argv) == 0
    out = capsys.readouterr().out
    run_id = re.search(r"MLflow run id: (\w+)", out).group(1)
    run_dir = tmp_path / "runs" / run_id
    fits = {t: json.loads((run_dir / "fits" / f"round_{t:03d}.json").read_text()) for t in range(3, 7)
            if (run_dir / "fits" / f"round_{t:03d}.json").is_file()}
    for t, fit in fits.items():
        assert main(["fit", "--run", str(run_dir), "--first", str(t), "--stop-below", "100", "--json",
                     "--n-boot", "0"]) == 0
        assert json.loads(capsys.readouterr().out)["stop"] == fit["stop"], t
    logged = tracking.run_metrics(run_id, uri_for(tmp_path))
    run = tracking.get_run(run_id, uri_for(tmp_path))
    assert run.info.status == "FINISHED"
    t = max(fits)
    assert logged["fit/stop"][t] == {"stop": 1.0, "continue": 0.0, "undetermined": -1.0}[fits[t]["stop"]["decision"]]
    assert run.data.tags["svgap.stop_decision"] == f"round {t}: {fits[t]['stop']['decision']}: " \
                                                   f"{fits[t]['stop']['reason']}"
    assert sorted(logged["U_s"]) == list(range(t + 1))  # rounds after a stop never measured
    if t == 6:  # no stop: the rule never said stop before the last round, which never stops
        assert all(f["stop"]["decision"] != "stop" for f in fits.values()) and "svgap.stop_reason" not in run.data.tags
        return
    m = re.search(r"stopped early: (.*)", out.replace("\n", " "))
    assert m and fits[t]["stop"]["decision"] == "stop" and m.group(1).startswith(fits[t]["stop"]["reason"][:40]), out
    assert fits[t]["stop"]["gain_upper"] < 100 and fits[t]["stop"]["gain"] <= fits[t]["stop"]["gain_upper"]
    assert sorted(logged["time/train"]) == list(range(t))  # round t measured, not trained on
    assert logged["fit/stop_gain_upper"][t] == pytest.approx(fits[t]["stop"]["gain_upper"])
    assert run.data.tags["svgap.stop_reason"] == fits[t]["stop"]["reason"]
    assert json.loads((run_dir / "state.json").read_text())["model_version"] == t
    assert sorted(p.name for p in (run_dir / "adapters").iterdir()) == [f"v{v:03d}.npz" for v in range(1, t + 1)]
    assert sorted(p.name for p in (run_dir / "rounds").iterdir())[-1] == f"round_{t:03d}.json"


def test_stop_rule_waits_for_the_external_budget_then_decides_after_its_jump(local_ray, base_model_dir, tmp_path,
                                                                            said):
    """All external data in round 4 (explicit shares): rounds 3 and 4 wait for it whatever the fit says; after it
    the rule decides only on the rounds measured after the jump (the plain fit reads the jump as self-improvement),
    so with rounds 5 and 6 left it cannot tell (too few rounds) and the run goes on to its last round. The joint fit
    with γ is still logged each round (fit/U_s_inf_external where γ is identified)."""
    res = run(tmp_path, base_model_dir, "rounds=6", "stop.when_predicted_gain_below=100", "external.budget=128",
              "external.strategy=explicit", "external.shares=[0,0,0,0,1,0]")
    waited = [s for s in said if "128 external examples are still to be used: not stopping" in s]
    assert [s[:len("round 3: stop rule: continue")] for s in waited] == [
        "round 3: stop rule: continue", "round 4: stop rule: continue"], said
    logged = tracking.run_metrics(res.run_id, res.tracking_uri)
    assert logged["external/used_total"][4] == 128 and sum(r["external"] for r in picks(res, 4)) == 128
    tags = tracking.get_run(res.run_id, res.tracking_uri).data.tags
    assert res.stop_reason is None and "svgap.stop_reason" not in tags
    assert [r.round for r in res.records] == list(range(7))
    assert res.fits[5]["stop"]["decision"] == "undetermined"
    assert res.fits[5]["stop"]["reason"].startswith("on the rounds after the external data of training round 4: "
                                                    "too few rounds")
    assert res.fits[6]["stop"]["reason"].startswith("the last round")
    assert any(s.startswith("round 5: no joint fit with external data") for s in said) or \
        5 in logged.get("fit/U_s_inf_external", {}), said


def test_qe_verifier_scores_are_probabilities_and_pick_the_candidates(local_ray, base_model_dir, tmp_path,
                                                                       default_workload):
    """verification.method qe: every score is in [0, 1], and round 0's picks carry the QE scores π_0 itself
    gives them (recomputed here on the same base model), which differ from the TF verifier's."""
    from orchestrator.engines.hf import HFBackend
    from orchestrator.run.round import derive_seed

    res = run(tmp_path, base_model_dir, *TINY, "rounds=1", "verification.method=qe")
    rows = picks(res, 0)
    assert len(rows) == 32
    assert all(0.0 <= r["score"] <= 1.0 for r in rows)
    for r in rows:  # the BoN rule on QE scores: a pick passes sigma unless no candidate did
        assert (r["score"] >= 0.5) == (not r["fallback"]) and (r["candidates_passing"] == 0) == r["fallback"]
    cfg = config.load(None, overrides(tmp_path, base_model_dir, *TINY))
    problems = {p.id: p for p in default_workload.problems("train", 32, derive_seed(cfg.seed, 0, "prompts"))}
    backend = HFBackend(base_model_dir, device="cpu", dtype="float32", threads=1)
    qs = [default_workload.qe_query(problems[r["problem_id"]], r["response"]) for r in rows]
    ts = [default_workload.tf_query(problems[r["problem_id"]], r["response"]) for r in rows]
    qe, tf = backend.qe_score(qs), backend.tf_score(ts)
    assert [r["score"] for r in rows] == pytest.approx(qe, abs=1e-5)
    assert max(abs(a - b) for a, b in zip(qe, tf)) > 1e-3  # QE really is another verifier here


def test_sampled_uncertainty_is_the_generation_logprobs(local_ray, base_model_dir, tmp_path):
    """verification.uncertainty sampled: U comes from the generation engine's logprobs -- U_s is U_s_sampled
    exactly, and each pick's NLL is that of its sampled tokens (teacher forcing agrees to 1e-4 in float32)."""
    from orchestrator.engines.hf import HFBackend

    res = run(tmp_path, base_model_dir, *TINY, "rounds=1", "verification.uncertainty=sampled")
    for r in res.records:
        assert r.metrics["U_s"] == r.metrics["U_s_sampled"]
        assert r.metrics["G"] == pytest.approx(r.metrics["U_s"] - r.metrics["U_v"])
    rows = picks(res, 0)
    assert res.records[0].metrics["U_v"] == pytest.approx(sum(r["nll"] for r in rows) / len(rows), rel=1e-12)
    # each pick's U is a real -log π_0(y|x): teacher forcing of the same tokens agrees (not what this run used)
    backend = HFBackend(base_model_dir, device="cpu", dtype="float32", threads=1)
    ids = []
    for r in rows:
        t = backend.encode(r["response"], special=False)
        ids.append(t + [backend.eos_id] if len(t) + 1 == r["length"] else t)
    assert [len(x) for x in ids] == [r["length"] for r in rows]
    tf = backend.score([r["prompt"] for r in rows], ids)
    assert [s.nll for s in tf] == pytest.approx([r["nll"] for r in rows], abs=1e-4)
    logged = tracking.run_metrics(res.run_id, res.tracking_uri)
    assert logged["U_s"][0] == logged["U_s_sampled"][0]
    assert tracking.get_run(res.run_id, res.tracking_uri).data.params["verification.uncertainty"] == "sampled"


def test_per_token_fit_quantity_is_fitted_and_saved(local_ray, base_model_dir, tmp_path):
    """fit.quantity per_token: the online fit runs on U_s_per_token / U_v_per_token and says so in its
    artifacts (run folder and MLflow)."""
    res = run(tmp_path, base_model_dir, *TINY, "rounds=3", "fit.quantity=per_token")
    assert sorted(res.fits) == [3]
    saved = json.loads((res.out_dir / "fits" / "round_003.json").read_text())
    assert saved["fitted_on"]["quantity"] == "per_token" and saved["fitted_on"]["rounds"] == [0, 1, 2, 3]
    assert json.loads(tracking.artifact_text(res.run_id, "fits/round_003.json", res.tracking_uri)) == saved
    per_tok = [r.metrics["U_s_per_token"] for r in res.records]
    total = [r.metrics["U_s"] for r in res.records]
    if saved.get("U_s_inf") is not None:  # a decaying fit: its limit lives on the per-token scale
        assert saved["U_s_inf"] <= max(per_tok) + 1e-9 and saved["U_s_inf"] < min(total)
    from orchestrator.theory.fit import fit_gap

    again = fit_gap([0, 1, 2, 3], per_tok, [r.metrics["U_v_per_token"] for r in res.records], n_boot=0,
                    quantity="per_token")
    assert again.verdict == saved["verdict"]
    if again.rate is not None:
        assert saved["rate"] == pytest.approx(again.rate, rel=1e-6)


def test_planned_strategy_logs_its_plan_and_spends_the_budget_exactly(local_ray, base_model_dir, tmp_path, said):
    """external.strategy planned: warm-up rounds 0..3 without external data, a plan after round 4 from the fit of
    rounds 0..4 (logged as external/plan.json with every candidate's prediction and the pick -- or, when the
    warm-up shows no decay, the reason and the uniform fallback), and exactly the budget M spent, none reused."""
    res = run(tmp_path, base_model_dir, "rounds=5", "external.budget=200", "external.strategy=planned",
              "external.gamma=0.2", "external.warmup_rounds=4")
    plan = json.loads((res.out_dir / "external" / "plan.json").read_text())
    assert plan["start_round"] == 4 and plan["observed"]["rounds"] == [0, 1, 2, 3, 4] and plan["budget"] == 200
    assert plan["observed"]["U_s"] == [r.metrics["U_s"] for r in res.records[:5]]
    if "fallback" in plan:  # the warm-up fit gave a verdict instead of a model: said and spent uniformly
        assert plan["chosen"] == "uniform" and plan["fallback"] in plan["why"]
    else:
        assert set(plan["strategies"]) == {"early", "uniform", "late"} and plan["chosen"] in plan["strategies"]
        key = "U_s_inf" if plan["objective"] == "limit" else "U_s_T"
        best = min(o[key] for o in plan["strategies"].values())
        # the best by the objective -- or uniform when the best cannot be told apart from the runner-up
        assert plan["strategies"][plan["chosen"]][key] == best or plan["chosen"] == "uniform", plan["why"]
        assert plan["fit"]["fitted_on"]["rounds"] == [0, 1, 2, 3, 4]
    assert plan["counts"] == [0, 0, 0, 0, 200]
    assert any(s.startswith("external data: ") and "counts per round [0, 0, 0, 0, 200]" in s for s in said), said
    arts = tracking.artifact_paths(res.run_id, uri=res.tracking_uri)
    assert "external/plan.json" in arts and "external/allocation.json" in arts
    assert json.loads(tracking.artifact_text(res.run_id, "external/plan.json", res.tracking_uri)) == plan
    logged = tracking.run_metrics(res.run_id, res.tracking_uri)
    assert [logged["external/count"][t] for t in range(5)] == [0.0, 0.0, 0.0, 0.0, 200.0]
    assert logged["external/used_total"][4] == 200
    ext = [r for t in range(6) for r in picks(res, t) if r["external"]]
    assert len(ext) == 200 and len({r["problem_id"] for r in ext}) == 200 and {r["round"] for r in ext} == {4}
    assert all(math.isfinite(logged["U_s"][t]) for t in range(6))
