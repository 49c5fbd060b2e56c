"""`svgap allocate`: the table arithmetic (γ recovered, predicted vs observed ordering), how many experiments run at
once, bad input (exit 2, one line, nothing logged), and a real tiny study on the study machinery (Ray Tune): parent +
nested runs in MLflow with the table artifacts."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from orchestrator import config
from orchestrator.studies.allocation import AllocationSummary, parse_strategies, study_data, summarize, to_csv, \
    to_markdown, variant
from orchestrator.studies.placement import concurrency
from orchestrator.studies.variants import Outcome, build_variants
from orchestrator.cli import main
from orchestrator.errors import SvgapError
from orchestrator.store.records import RoundRecord
from orchestrator.run.scheduler import round_counts, strategy_shares
from orchestrator.theory.allocation import simulate
from orchestrator.theory.model import GapModel
from stores import sqlite_uri


# ---- table arithmetic on known dynamics ------------------------------------------------------------------------------
def outcome(strategy: str, seed: int, model: GapModel, gamma: float, rounds: int, budget: int, acc: list[float]):
    counts = round_counts(strategy_shares(strategy, rounds), budget) if strategy != "none" else [0] * rounds
    eta = [c / budget for c in counts]
    path = simulate(model, gamma, eta)
    recs = []
    for t in range(rounds + 1):
        m = {"U_s": path.U_s_path[t], "U_v": path.U_v_path[t], "heldout_acc": acc[t]}
        if t < rounds:
            m.update({"external/eta": eta[t], "external/count": float(counts[t])} if strategy != "none" else {})
        recs.append(RoundRecord(t, t, m, {}, {}))
    cfg = config.load(None, [f"rounds={rounds}", f"external.budget={budget}", f"seed={seed}"])
    return Outcome(variant(strategy, seed, cfg), run_id=f"{strategy}{seed}", records=recs)


def test_summary_recovers_gamma_and_orders_by_the_theory():
    model = GapModel(rate=0.5, alpha_prime=3.0, beta_prime=1.0, U_s_inf=2.0, U_v_inf=1.5)
    rounds, budget, gamma = 8, 40, 0.8
    accs = {"none": 0.50, "early": 0.62, "uniform": 0.61, "late": 0.60}
    outs = [outcome(s, seed, model, gamma, rounds, budget,
                    [0.3] + [accs[s] + 0.01 * seed] * rounds) for s in accs for seed in (0, 1)]
    base = outs[0].variant.cfg
    table = summarize(outs, base)
    rows = {r["strategy"]: r for r in table["rows"]}
    assert rows["none"]["U_s_inf"] == pytest.approx(2.0, abs=1e-3)
    for s in ("early", "uniform", "late"):
        assert rows[s]["gamma"] == pytest.approx(gamma, rel=1e-3)
        assert rows[s]["gain_over_none"] == pytest.approx(accs[s] - accs["none"])
        assert rows[s]["initial_acc"] == pytest.approx(0.3) and rows[s]["seeds"] == [0, 1]
        assert rows[s]["final_acc_sd"] == pytest.approx(0.00707, abs=1e-4)
    s = table["summary"]
    assert s["gamma_pooled"] == pytest.approx(gamma, rel=1e-3)
    assert s["observed_order"] == ["early", "uniform", "late", "none"]
    assert s["predicted_order"][-1] == "none"  # every allocation beats no external data in the model
    direct = {k: simulate(model, gamma, [c / budget for c in round_counts(strategy_shares(k, rounds), budget)]).U_s_T
              for k in ("early", "uniform", "late")}
    assert s["predicted_order"][:3] == sorted(direct, key=direct.get)
    assert rows["uniform"]["predicted_U_s_T"] == pytest.approx(direct["uniform"], rel=1e-6)
    for k in ("early", "uniform", "late"):  # each run's limit includes its external jumps (not a misread fit)
        eta = [c / budget for c in round_counts(strategy_shares(k, rounds), budget)]
        assert rows[k]["U_s_inf"] == pytest.approx(simulate(model, gamma, eta).U_s_inf, abs=1e-3)
    assert s["external_spread"] == pytest.approx(0.02) and s["external_mean_gain"] == pytest.approx(0.11)
    assert s["all_external_beat_none"] is True
    md = to_markdown(table)
    assert "| early |" in md and "spread between external strategies: 0.020" in md
    assert to_csv(table).splitlines()[0].startswith("strategy,seeds,initial_acc")


def test_summary_survives_a_failed_run():
    model = GapModel(rate=0.5, alpha_prime=3.0, beta_prime=1.0, U_s_inf=2.0, U_v_inf=1.5)
    ok = outcome("uniform", 0, model, 1.0, 4, 8, [0.3] * 5)
    bad = Outcome(variant("none", 0, ok.variant.cfg), error="boom")
    table = summarize([bad, ok], ok.variant.cfg)
    rows = {r["strategy"]: r for r in table["rows"]}
    assert rows["none"]["failed_seeds"] == [0] and rows["none"]["final_acc"] is None
    assert rows["uniform"]["gain_over_none"] is None
    assert "failed" in to_markdown(table)


@pytest.mark.parametrize("want, have, expect", [
    ({"CPU": 2.0, "GPU": 0.0}, {"CPU": 2.0}, 1),
    ({"CPU": 2.0, "GPU": 0.0}, {"CPU": 9.0}, 4),
    ({"CPU": 1.0, "GPU": 1.0}, {"CPU": 16.0, "GPU": 3.0}, 3),
    ({"CPU": 3.0, "GPU": 0.0}, {"CPU": 2.0}, 1),
])
def test_concurrency(want, have, expect):
    assert concurrency(want, have) == expect


def test_variants_one_per_strategy_and_seed():
    data, grid = study_data({"seed": 5, "rounds": 3}, 9, ["none", "late"])
    base, vs = build_variants(data, grid, 2, AllocationSummary.point_name)
    assert [(v.strategy, v.seed) for v in vs] == [("none", 5), ("none", 6), ("late", 5), ("late", 6)]
    assert all(v.cfg.external.budget == 9 and v.cfg.external.strategy == v.strategy for v in vs)
    assert vs[3].cfg.tracking.run_name == "late seed 6" and base.seed == 5
    with pytest.raises(SvgapError, match="unknown strategy 'sometimes'"):
        parse_strategies("none,sometimes")


# ---- bad input: one line, exit 2, nothing logged ---------------------------------------------------------------------
def write_jsonl(path, n):
    path.write_text("".join(json.dumps({"prompt": f"{i}+1=", "response": str(i + 1)[::-1]}) + "\n"
                            for i in range(n)))
    return str(path)


@pytest.mark.parametrize("args, needle", [
    (["--strategies", "none,sometimes"], "--strategies: unknown strategy 'sometimes'"),
    (["--strategies", "none,none"], "--strategies: duplicate strategy"),
    (["--seeds", "0"], "--seeds must be >= 1"),
    (["--budget", "0"], "--budget must be >= 1"),
    (["--budget", "99"], "grid point early: external.budget 99 is larger than external.source"),
    (["--strategies", "none,planned", "--set", "rounds=5"], "grid point planned: external.gamma: required"),
    (["--strategies", "planned", "--set", "external.gamma=1", "--set", "rounds=5", "--set",
      "external.warmup_rounds=2"], "grid point planned: external.warmup_rounds: 2 warm-up rounds"),
    (["--strategies", "explicit", "--set", "external.shares=[1.0]"], "external.shares: has 1 entries"),
    (["--set", "resources.generation.actors=3", "--set", "resources.generation.cpus=1"], "the pools ask for 4 CPU"),
])
def test_bad_input_exit_2_one_line_nothing_logged(local_ray, tmp_path, capsys, args, needle):
    src = write_jsonl(tmp_path / "ext.jsonl", 10)
    argv = ["allocate", "--budget", "4", "--set", "rounds=2", "--set", f"external.source={src}",
            "--set", f"tracking.out_dir={tmp_path / 'runs'}", "--tracking-uri", sqlite_uri(tmp_path / 'm.db')]
    assert main(argv + args) == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1, err
    assert not (tmp_path / "runs").exists()
    if (tmp_path / "m.db").exists():
        from orchestrator.store import tracking

        client = tracking.client(sqlite_uri(tmp_path / 'm.db'))
        assert not client.search_runs([e.experiment_id for e in client.search_experiments()])


# ---- a real tiny study -------------------------------------------------------------------------------------------------
import ray  # noqa: E402 - a hard dependency: a broken install fails here instead of skipping


@pytest.mark.slow
def test_tiny_study_parent_children_and_table(local_ray, base_model_dir, tmp_path, tracking_uri, capsys):
    from orchestrator.store import tracking

    uri = tracking_uri
    argv = ["allocate", "--budget", "6", "--strategies", "none,early", "--seeds", "1", "--tracking-uri", uri,
            "--experiment", "alloc"]
    for kv in ("workload.train_prompts=16", "workload.heldout_prompts=32", "generation.n=2", "rounds=2",
               "training.epochs=1", f"model.path={base_model_dir}", f"tracking.out_dir={tmp_path / 'runs'}"):
        argv += ["--set", kv]
    assert main(argv) == 0
    out = capsys.readouterr().out
    parent = re.search(r"MLflow parent run id: (\w+)", out).group(1)
    assert "| early |" in out and "observed order" in out and "spread between external strategies" in out

    run = tracking.get_run(parent, uri)
    assert run.info.status == "FINISHED" and run.data.params["study.strategies"] == "none,early"
    arts = tracking.artifact_paths(parent, uri=uri)
    assert {"allocation_table.json", "allocation_table.md", "allocation_table.csv", "config.yaml"} <= set(arts)
    children = tracking.child_runs(parent, uri)
    names = sorted(c.data.tags["mlflow.runName"] for c in children)
    assert names == ["early seed 0", "none seed 0"]
    assert all(c.info.status == "FINISHED" for c in children)
    folder = Path(re.search(r"table files: (\S+)", out).group(1))
    assert folder.parent == tmp_path / "runs" / "studies"  # Tune's state and the table: the study's own folder
    logs = sorted((folder / "logs").glob("trial_*.log"))  # each trial's own log lines, written in its Ray worker
    assert len(logs) == 2 and all("round 0/2 done" in p.read_text() for p in logs), logs
    table = json.loads((folder / "allocation_table.json").read_text())
    assert [r["strategy"] for r in table["rows"]] == ["none", "early"]
    by_name = {c.data.tags["mlflow.runName"]: c.info.run_id for c in children}
    early = tracking.run_metrics(by_name["early seed 0"], uri)
    assert [early["external/count"][t] for t in (0, 1)] == [6, 0]
    assert "external/count" not in tracking.run_metrics(by_name["none seed 0"], uri)
    for r in table["rows"]:
        assert 0 <= r["initial_acc"] <= 1 and 0 <= r["final_acc"] <= 1
    # the same base model and held-out set for every strategy of a seed: round 0 is identical
    assert len({r["initial_acc"] for r in table["rows"]}) == 1


def test_a_fit_that_fails_on_one_seed_is_shown_as_such():
    model = GapModel(rate=0.5, alpha_prime=3.0, beta_prime=1.0, U_s_inf=2.0, U_v_inf=1.5)
    good = outcome("none", 0, model, 1.0, 6, 12, [0.3] * 7)
    flat = outcome("none", 1, model, 1.0, 6, 12, [0.3] * 7)
    for r in flat.records:  # no decay: the fit gives a verdict, not a limit
        r.metrics["U_s"], r.metrics["U_v"] = 5.0, 4.0
    table = summarize([good, flat], good.variant.cfg)
    row = table["rows"][0]
    assert row["U_s_inf"] == pytest.approx(2.0, abs=1e-3) and row["U_s_inf_sd"] is None
    assert row["U_s_inf_seeds"] == 1 and "2.0000 (1 of 2 seeds)" in to_markdown(table)
