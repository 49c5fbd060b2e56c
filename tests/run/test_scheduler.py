"""External-data scheduler: rounding, totals, no reuse, every strategy, sources, planned == `svgap plan`; and a real
3-round run whose picks JSONL and MLflow metrics show the external rows."""
from __future__ import annotations

import json
import math

import pytest

from orchestrator import config
from orchestrator.cli import main
from orchestrator.errors import SvgapError
from orchestrator.store.records import RoundRecord
from orchestrator.run.scheduler import build_scheduler, read_jsonl, round_counts
from orchestrator.store.keep import keep_external
from orchestrator.store.run_store import RunFiles
from orchestrator.theory.model import GapModel


def cfg_for(*overrides: str) -> config.ExperimentConfig:
    return config.load(None, list(overrides))


def write_jsonl(path, n: int, start: int = 0) -> str:
    path.write_text("".join(json.dumps({"prompt": f"{i}+1=", "response": str(i + 1)[::-1]}) + "\n"
                            for i in range(start, start + n)))
    return str(path)


class Recorder:
    """Collects what the scheduler logs (stands in for the MLflow run; the real one is tested end to end below)."""

    def __init__(self):
        self.dicts: dict[str, dict] = {}

    def log_dict(self, data, name):
        self.dicts[name] = json.loads(json.dumps(data))


def drive(sched, rounds: int, records=None) -> list[list]:
    out = []
    for t in range(rounds):
        out.append(sched.examples(t, (records or [])[:t + 1]))
    return out


# ---- arithmetic ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shares, budget, expect", [
    ([1 / 3] * 3, 10, [4, 3, 3]),
    ([0.5, 0.5, 0, 0], 7, [4, 3, 0, 0]),
    ([0.25] * 4, 2, [1, 1, 0, 0]),
    ([0.1, 0.2, 0.7], 1, [0, 0, 1]),
    ([0.0, 1.0], 5, [0, 5]),
    ([0.2] * 5, 0, [0] * 5),
])
def test_largest_remainder(shares, budget, expect):
    got = round_counts(shares, budget)
    assert got == expect and sum(got) == budget


def test_rounding_is_within_one_and_sums_exactly():
    import random

    rng = random.Random(0)
    for _ in range(500):
        k = rng.randint(1, 12)
        w = [rng.random() * (rng.random() > 0.3) for _ in range(k)] or [1.0]
        if sum(w) == 0:
            w[0] = 1.0
        shares = [x / sum(w) for x in w]
        m = rng.randint(0, 500)
        c = round_counts(shares, m)
        assert sum(c) == m and all(x >= 0 for x in c)
        assert all(abs(x - s * m) < 1 for x, s in zip(c, shares))


@pytest.mark.parametrize("strategy, extra, expect", [
    ("uniform", [], [4, 4, 4, 4, 4, 4]),
    ("early", [], [12, 12, 0, 0, 0, 0]),
    ("late", [], [0, 0, 0, 0, 12, 12]),
    ("explicit", ["external.shares=[0.5, 0.25, 0.25, 0, 0, 0]"], [12, 6, 6, 0, 0, 0]),
])
def test_every_fixed_strategy_hands_out_its_counts_without_reuse(tmp_path, run_store, strategy, extra, expect):
    src = write_jsonl(tmp_path / "ext.jsonl", 40)
    cfg = cfg_for("rounds=6", "external.budget=24", f"external.strategy={strategy}", f"external.source={src}",
                  *extra)
    sched = build_scheduler(cfg, workload=None)
    rec = Recorder()
    sched.attach()
    batches = drive(sched, 6)
    assert not (run_store.root / "external").exists()  # the scheduler decides; the controller keeps it:
    keep_external(run_store, rec, sched.take())
    assert sched.take() == []  # each decision is kept once
    assert [len(b) for b in batches] == expect
    ids = [p.id for b in batches for p in b]
    assert len(ids) == 24 == len(set(ids))
    src_rows = {p.id: p for p in read_jsonl(tmp_path / "ext.jsonl")}
    assert all(p == src_rows[p.id] for b in batches for p in b)  # answer = the reference response
    m = [sched.metrics(t) for t in range(6)]
    assert [x["external/count"] for x in m] == expect
    assert [x["external/used_total"] for x in m] == [sum(expect[:t + 1]) for t in range(6)]
    assert math.fsum(x["external/eta"] for x in m) == pytest.approx(1.0)
    assert rec.dicts["external/allocation.json"]["counts"] == expect
    assert json.loads((run_store.root / "external" / "allocation.json").read_text())["counts"] == expect


def test_none_hands_out_nothing(tmp_path):
    sched = build_scheduler(cfg_for("rounds=4", "external.budget=24", "external.strategy=none"), workload=None)
    sched.attach()
    assert [len(b) for b in drive(sched, 4)] == [0, 0, 0, 0] and sched.remaining == 0
    assert all(sched.metrics(t) == {"external/eta": 0.0, "external/count": 0.0, "external/used_total": 0.0}
               for t in range(4))


def test_workload_source_draws_distinct_reference_answers_and_knows_its_size(default_workload):
    cfg = cfg_for("rounds=4", "external.budget=40", "external.strategy=uniform")
    sched = build_scheduler(cfg, default_workload)
    got = [p for b in drive(sched, 4) for p in b]
    assert len({p.id for p in got}) == 40
    assert all(default_workload.check(p, p.answer) for p in got)  # the reference answer is correct
    # the external pool is its own split: no id is any round's train prompt or a held-out prompt
    from orchestrator.run.round import derive_seed

    wc = cfg.workload
    prompts = {p.id for t in range(4)
               for p in default_workload.problems("train", wc.train_prompts, derive_seed(cfg.seed, t, "prompts"))}
    heldout = {p.id for p in default_workload.problems("heldout", wc.heldout_prompts, derive_seed(cfg.seed, "heldout"))}
    assert len(prompts) > 100 and len(heldout) > 100 and not {p.id for p in got} & (prompts | heldout)
    import workloads

    small = cfg_for("workload.options.digits=1", "external.strategy=uniform", "external.budget=500")
    with pytest.raises(SvgapError, match="external.budget 500 .*external split"):
        build_scheduler(small, workloads.get(small.workload.name, small.workload.options))


def test_seed_decides_the_draw_and_a_round_is_served_once(tmp_path):
    src = write_jsonl(tmp_path / "ext.jsonl", 50)
    a, b, c = (build_scheduler(cfg_for("rounds=2", "external.budget=10", "external.strategy=uniform",
                                       f"external.source={src}", f"seed={s}"), None) for s in (0, 0, 1))
    ids = lambda s: [p.id for batch in drive(s, 2) for p in batch]  # noqa: E731
    first = ids(a)
    assert first == ids(b) and first != ids(c)
    with pytest.raises(SvgapError, match="already handed out"):
        a.examples(1, [])
    with pytest.raises(SvgapError, match="training rounds are 0..1"):
        a.examples(2, [])


def test_jsonl_blank_lines_ok_and_ids_kept(tmp_path):
    p = tmp_path / "x.jsonl"
    p.write_text('{"prompt": "a", "response": "b", "id": "one"}\n\n{"prompt": "c", "response": "d"}\n')
    rows = read_jsonl(p)
    assert [r.id for r in rows] == ["one", "ext-3"] and rows[1].answer == "d"


# ---- bad input -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("content, extra, needle", [
    (None, [], "external.source: file not found"),
    ('{"prompt": "a", "response": "b"}\nnot json\n', [], "line 2: not valid JSON"),
    ('{"prompt": "a"}\n', [], "line 1: missing or non-string field(s) response"),
    ('[1, 2]\n', [], "line 1: expected an object"),
    ('{"prompt": "a", "response": "b"}\n' * 3, ["external.budget=4"],
     "external.budget 4 is larger than external.source"),
    ('{"prompt": "a", "response": "b"}\n' * 9, ["external.strategy=planned", "rounds=6"],
     "external.gamma: required with external.strategy planned"),
    ('{"prompt": "a", "response": "b"}\n' * 9, ["external.strategy=planned", "external.gamma=1",
                                                "external.warmup_rounds=2", "rounds=6"],
     "external.warmup_rounds: 2 warm-up rounds give 3 measured rounds"),
    ('{"prompt": "a", "response": "b"}\n' * 9, ["external.strategy=planned", "external.gamma=1",
                                                "external.warmup_rounds=4", "rounds=4"],
     "leaves no training round"),
])
def test_bad_source_or_plan_is_one_line(tmp_path, content, extra, needle):
    path = tmp_path / "ext.jsonl"
    if content is not None:
        path.write_text(content)
    cfg = cfg_for("rounds=3", "external.budget=2", "external.strategy=uniform", f"external.source={path}", *extra)
    with pytest.raises(SvgapError) as e:
        build_scheduler(cfg, None)
    assert needle in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("content, needle", [
    ('{"prompt": "a"}\n', "line 1: missing or non-string field(s) response"),
    ('{"prompt": "a", "response": "b"}\n', "external.budget 2 is larger than external.source"),
])
def test_bad_source_through_svgap_run_exits_2_before_anything(tmp_path, capsys, monkeypatch, content, needle):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ext.jsonl").write_text(content)
    rc = main(["run", "--set", "external.strategy=uniform", "--set", "external.budget=2", "--set",
               "external.source=ext.jsonl", "--set", "rounds=2"])
    err = capsys.readouterr().err
    assert rc == 2 and needle in err and err.count("\n") == 1, err
    assert sorted(x.name for x in tmp_path.iterdir()) == ["ext.jsonl"]  # no mlflow.db, no runs/


# ---- planned ---------------------------------------------------------------------------------------------------------
def records_from(model: GapModel, rounds: int) -> list[RoundRecord]:
    """Round records whose U_s / U_v follow a known gap model (plus a little deterministic wobble)."""
    out = []
    for t in range(rounds):
        w = 1e-3 * math.sin(3.7 * t)
        us, uv = float(model.U_s(t)) + w, float(model.U_v(t)) - w
        out.append(RoundRecord(t, t, {"U_s": us, "U_v": uv, "U_s_per_token": us / 4, "U_v_per_token": uv / 4},
                               {}, {}))
    return out


@pytest.mark.parametrize("objective, gamma", [("limit", 0.5), ("horizon", 0.5), ("horizon", 2.0)])
def test_planned_chooses_what_svgap_plan_chooses(tmp_path, capsys, said, objective, gamma):
    src = write_jsonl(tmp_path / "ext.jsonl", 60)
    model = GapModel(rate=0.6, alpha_prime=3.0, beta_prime=1.2, U_s_inf=2.0, U_v_inf=1.5)
    rounds, w = 9, 4
    recs = records_from(model, rounds + 1)
    cfg = cfg_for(f"rounds={rounds}", "external.budget=30", "external.strategy=planned", f"external.source={src}",
                  f"external.gamma={gamma}", f"external.warmup_rounds={w}", f"external.objective={objective}")
    sched = build_scheduler(cfg, None)
    rec = Recorder()
    sched.attach()
    batches = drive(sched, rounds, recs)
    keep_external(RunFiles(tmp_path / "run"), rec, sched.take())
    assert json.loads((tmp_path / "run" / "external" / "plan.json").read_text()) == rec.dicts["external/plan.json"]
    counts = [len(b) for b in batches]
    assert counts[:w] == [0] * w and sum(counts) == 30
    ids = [p.id for b in batches for p in b]
    assert len(set(ids)) == 30

    plan_json = rec.dicts["external/plan.json"]
    assert plan_json["fit"]["fitted_on"]["rounds"] == list(range(w + 1))  # fitted on the warm-up rounds 0..w
    assert set(plan_json["strategies"]) == {"early", "uniform", "late"}
    for o in plan_json["strategies"].values():
        assert {"eta", "U_s_T", "U_s_inf", "J"} <= set(o)
    assert plan_json["counts"] == counts
    fit_file = tmp_path / "fit.json"
    fit_file.write_text(json.dumps(plan_json["fit"]))
    capsys.readouterr()
    assert main(["plan", "--fit", str(fit_file), "--gamma", str(gamma), "--rounds", str(rounds - w),
                 "--start-round", str(w), "--objective", objective, "--json"]) == 0
    cli = json.loads(capsys.readouterr().out)
    assert plan_json["chosen"] == cli["chosen"] and plan_json["comparison"] == cli["comparison"]
    # the best by the point prediction, unless the fit cannot tell it from the runner-up: then uniform (with no
    # runner-up, as when gamma 2 makes early and uniform predict negative uncertainties, the best stands)
    assert cli["chosen"] == (cli["best"] if cli["comparison"]["distinguishable"] in (True, None) else "uniform")
    assert plan_json["strategies"][cli["chosen"]]["eta"] == cli["strategies"][cli["chosen"]]["eta"]
    assert counts[w:] == round_counts(cli["strategies"][cli["chosen"]]["eta"], 30)
    assert any(cli["chosen"] in s and "predicted" in s for s in said)
    assert sched.metrics(w)["external/count"] == counts[w]


def test_planned_without_a_model_falls_back_to_uniform_and_says_why(tmp_path, said):
    src = write_jsonl(tmp_path / "ext.jsonl", 20)
    flat = [RoundRecord(t, t, {"U_s": 3.0, "U_v": 2.0}, {}, {}) for t in range(7)]
    cfg = cfg_for("rounds=6", "external.budget=6", "external.strategy=planned", f"external.source={src}",
                  "external.gamma=1", "external.warmup_rounds=3")
    sched = build_scheduler(cfg, None)
    rec = Recorder()
    sched.attach()
    assert [len(b) for b in drive(sched, 6, flat)] == [0, 0, 0, 2, 2, 2]
    keep_external(RunFiles(tmp_path / "run"), rec, sched.take())
    assert rec.dicts["external/plan.json"]["chosen"] == "uniform" and rec.dicts["external/plan.json"]["fallback"]
    assert any("no plan" in s for s in said)


def test_planned_with_only_impossible_predictions_falls_back_with_the_verdict(tmp_path, said):
    """gamma 30 empties U_v in one jump: every allocation predicts a negative uncertainty -> uniform, and why."""
    src = write_jsonl(tmp_path / "ext.jsonl", 20)
    recs = records_from(GapModel(rate=0.6, alpha_prime=3.0, beta_prime=1.2, U_s_inf=2.0, U_v_inf=1.5), 10)
    cfg = cfg_for("rounds=9", "external.budget=10", "external.strategy=planned", f"external.source={src}",
                  "external.gamma=30", "external.warmup_rounds=4", "external.objective=horizon")
    sched = build_scheduler(cfg, None)
    rec = Recorder()
    sched.attach()
    assert [len(b) for b in drive(sched, 9, recs)] == [0, 0, 0, 0, 2, 2, 2, 2, 2]
    keep_external(RunFiles(tmp_path / "run"), rec, sched.take())
    pj = rec.dicts["external/plan.json"]
    assert pj["chosen"] == "uniform" and pj["fallback"].startswith("negative uncertainty: every allocation")


# ---- bad input through the CLI: exit 2, one line, nothing run -------------------------------------------------------
@pytest.mark.parametrize("extra, needle", [
    (["external.budget=5"], "external.budget 5 is larger than external.source"),
    (["external.strategy=explicit", "external.shares=[0.5, 0.5]"], "external.shares: has 2 entries"),
    (["external.strategy=explicit", "external.shares=[0.5, 0.2, 0.1]"], "must be non-negative and sum to 1"),
    (["external.strategy=planned", "external.gamma=1", "external.warmup_rounds=1"], "external.warmup_rounds"),
])
def test_run_bad_external_input_exits_2_before_any_round(tmp_path, tracking_uri, capsys, extra, needle):
    src = write_jsonl(tmp_path / "ext.jsonl", 3)
    argv = ["run", "--set", "rounds=3", "--set", "external.budget=2", "--set", "external.strategy=uniform",
            "--set", f"external.source={src}", "--set", f"tracking.out_dir={tmp_path / 'runs'}",
            "--tracking-uri", tracking_uri]
    for e in extra:
        argv += ["--set", e]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1, err
    assert not (tmp_path / "runs").exists() and not (tmp_path / "mlflow.db").exists()


# ---- a real run: external rows in the picks JSONL and external/* in MLflow -------------------------------------------
import ray  # noqa: E402 - a hard dependency: a broken install fails here instead of skipping


def test_three_rounds_with_a_tiny_budget(local_ray, base_model_dir, tmp_path, tracking_uri):
    import workloads
    from orchestrator.store import tracking
    from orchestrator.run.experiment import Experiment

    uri = tracking_uri
    cfg = cfg_for("workload.train_prompts=16", "workload.heldout_prompts=32", "generation.n=2", "rounds=3",
                  "training.epochs=1", f"model.path={base_model_dir}", f"tracking.out_dir={tmp_path / 'runs'}",
                  "external.budget=7", "external.strategy=early")
    res = Experiment(cfg, tracking_uri=uri).run()
    run_dir = res.out_dir
    wl = workloads.get(cfg.workload.name, cfg.workload.options)
    expect = [7, 0, 0]  # early over 3 rounds: ceil(3/3) = 1 round gets everything
    from orchestrator.run.round import derive_seed

    pool = {p.id: p for p in wl.problems("external", 7, derive_seed(cfg.seed, "external"))}
    heldout = {p.id for p in wl.problems("heldout", 32, derive_seed(cfg.seed, "heldout"))}
    seen = set()
    for t in range(3):
        rows = [json.loads(x) for x in (run_dir / "picks" / f"round_{t:03d}.jsonl").read_text().splitlines()]
        ext = [r for r in rows if r["external"]]
        prompts = {r["problem_id"] for r in rows if not r["external"]}
        assert len(prompts) == 16 and not prompts & set(pool) and not heldout & set(pool)  # disjoint ids
        assert len(ext) == expect[t] and len(rows) == 16 + expect[t]
        for r in ext:
            assert r["round"] == t and r["problem_id"] not in seen
            seen.add(r["problem_id"])
            p = pool[r["problem_id"]]  # an external-split problem with the stronger source's (reference) response
            assert r["prompt"] == p.prompt and r["response"] == wl.reference(p) and wl.check(p, r["response"])
    logged = tracking.run_metrics(res.run_id, uri)
    assert [logged["external/count"][t] for t in range(3)] == expect
    assert [logged["external/used_total"][t] for t in range(3)] == [7, 7, 7]
    assert logged["external/eta"][0] == pytest.approx(1.0)
    assert logged["train/external"][0] == 7
    assert "external/allocation.json" in tracking.artifact_paths(res.run_id, uri=uri)
    assert json.loads((run_dir / "external" / "allocation.json").read_text())["counts"] == expect
