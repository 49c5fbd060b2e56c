"""Studies without Ray: grids and their bad input (exit 2, one line, nothing written), the bundles a trial reserves,
the theory stop rule on known dynamics, and the sweep table's arithmetic."""
from __future__ import annotations

import math

import numpy as np
import pytest

from orchestrator import config
from orchestrator.cli import main
from orchestrator.errors import SvgapError
from orchestrator.store.records import RoundRecord
from orchestrator.studies.placement import HEAD_CPU, trial_bundles
from orchestrator.studies.table import SweepSummary
from orchestrator.studies.study import StudySpec
from orchestrator.studies.theory_stop import TheoryStopRule
from orchestrator.studies.variants import Outcome, build_variants, check_size, identity, parse_grid
from orchestrator.theory.model import GapModel
from stores import sqlite_uri


# ---- grids ---------------------------------------------------------------------------------------------------------
def test_grid_product_times_seeds_each_validated():
    grid = parse_grid(["generation.n=4,8", "training.lr=1e-5,2e-3"])
    assert grid == {"generation.n": [4, 8], "training.lr": [1e-5, 0.002]}  # YAML 1.1 reads 1e-5 as text
    base, vs = build_variants({"seed": 3, "rounds": 2}, grid, 2)
    assert len(vs) == 8 and {v.seed for v in vs} == {3, 4}
    assert vs[0].cfg.training.lr == pytest.approx(1e-5)
    assert vs[-1].cfg.generation.n == 8 and vs[-1].cfg.training.lr == pytest.approx(2e-3)
    assert vs[1].cfg.tracking.run_name == "generation.n=4, training.lr=1e-05 seed 4"
    assert base.seed == 3 and base.generation.n == 8


@pytest.mark.parametrize("items, needle", [
    (["generation.m=4,8"], "generation.m"),
    (["generation.n=4,0"], "generation.n"),
    (["generation.n"], "expected KEY=V1,V2"),
    (["generation.n=4,4"], "listed twice"),
    (["generation.n=4", "generation.n=8"], "given twice"),
    (["seed=1,2"], "use --seeds"),
    (["tracking.out_dir=a,b"], "cannot be swept"),
    (["generation.n=4,"], "an empty value"),
])
def test_bad_grids_are_refused(items, needle):
    with pytest.raises(SvgapError, match=needle):
        build_variants({}, parse_grid(items), 1)


def test_size_needs_yes():
    check_size(16, False)
    check_size(40, True)
    with pytest.raises(SvgapError, match="17 trials .* add --yes"):
        check_size(17, False)


def test_identity_is_the_command():
    base, _ = build_variants({}, {}, 1)
    a = identity("sweep", base, {"generation.n": [4, 8]}, 1, sqlite_uri("x.db"), "e")
    assert a == identity("sweep", base, {"generation.n": [4, 8]}, 1, sqlite_uri("x.db"), "e")
    assert a != identity("sweep", base, {"generation.n": [4, 16]}, 1, sqlite_uri("x.db"), "e")
    assert a != identity("sweep", base, {"generation.n": [4, 8]}, 2, sqlite_uri("x.db"), "e")


@pytest.mark.parametrize("args, needle", [
    (["--grid", "generation.nn=4,8"], "generation.nn"),
    (["--grid", "generation.temperature=1.0,-1"], "generation.temperature"),
    (["--grid", "generation.n=1,2,3,4,5,6,7,8,9", "--seeds", "2"], "18 trials"),
    ([], "--grid: name at least one"),
    (["--grid", "generation.n=4", "--seeds", "0"], "--seeds must be >= 1"),
])
def test_sweep_bad_input_exit_2_one_line_nothing_written(tmp_path, capsys, args, needle):
    argv = ["sweep", "--set", f"tracking.out_dir={tmp_path / 'runs'}", "--tracking-uri",
            sqlite_uri(tmp_path / 'm.db')] + args
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1, err
    assert not (tmp_path / "runs").exists() and not (tmp_path / "m.db").exists()


# ---- what a trial reserves -----------------------------------------------------------------------------------------
def test_trial_bundles_from_the_pool_specs():
    cfg = config.load(None, [])  # 2x0.5 generation, 1x0.5 verification, 1x0.5 training
    roomy = trial_bundles(cfg, {"CPU": 8.0})
    assert roomy.bundles == [{"CPU": HEAD_CPU}] + [{"CPU": 0.5}] * 4
    assert roomy.roles == {"generation": [1, 2], "verification": [3], "training": [4]} and not roomy.colocated
    tight = trial_bundles(cfg, {"CPU": 2.0})  # 2.0 of pools + the trial's own share do not fit: training shares
    assert tight.colocated and tight.roles == {"generation": [1, 2], "verification": [3]}
    assert tight.total() == {"CPU": pytest.approx(1.5 + HEAD_CPU)}
    gpu = trial_bundles(config.load(None, ["resources.verification.gpus=1"]), {"CPU": 8.0, "GPU": 1.0})
    assert gpu.bundles[3] == {"CPU": 0.5, "GPU": 1.0}


# ---- the theory stop rule ------------------------------------------------------------------------------------------
def history(model: GapModel, rounds: int, noise: float = 0.0, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    S, V, _ = model.predict(np.arange(rounds + 1))
    return [{"round": t, "U_s": float(S[t] + noise * rng.normal()), "U_v": float(V[t] + noise * rng.normal())}
            for t in range(rounds + 1)]


def test_theory_rule_stops_the_point_that_cannot_win_and_keeps_the_best():
    good = history(GapModel(0.6, 0.9, 0.4, 0.6, 0.35), 8, 0.003)
    flat = [{"round": t, "U_s": 1.48 + 0.002 * math.sin(t), "U_v": 1.0 + 0.002 * math.cos(t)} for t in range(9)]
    rule = TheoryStopRule(min_rounds=4)
    for t in range(3):  # fewer than 4 measured rounds: no prediction, never a stop
        assert rule.observe("flat", flat[:t + 1]) is None and rule.decide("flat", t, 8) is None
    rule.observe("good", good)  # the best trial so far (e.g. finished): U_s,inf near 0.6
    p = rule.observe("flat", flat[:4])
    assert p is not None and p.round == 3 and p.lo > 1.4
    reason = rule.decide("flat", 3, 8)
    assert reason and "cannot reach trial good's" in reason and "Bonferroni" in reason and "97.5 %" in reason
    assert rule.decide("good", 8, 8) is None  # the best is never stopped (nor a last round)
    assert rule.decide("flat", 8, 8) is None


def test_theory_rule_does_not_stop_an_overlapping_or_unpredictable_trial():
    a = history(GapModel(0.5, 1.0, 0.5, 0.80, 0.50), 6, 0.01, seed=1)
    b = history(GapModel(0.5, 1.0, 0.5, 0.81, 0.51), 6, 0.01, seed=2)
    rule = TheoryStopRule(min_rounds=4)
    rule.observe("a", a)
    rule.observe("b", b[:5])
    assert rule.decide("b", 4, 6) is None  # intervals overlap: it might still win
    falling = [{"round": t, "U_s": 2.0 - 0.2 * t, "U_v": 1.5 - 0.2 * t} for t in range(5)]  # no slowing yet
    p = rule.observe("f", falling)  # decaying, but a straight line: the rate and so the limit's lower end unbounded
    assert (p is None or p.lo == -math.inf) and rule.decide("f", 4, 6) is None
    rising = [{"round": t, "U_s": 1.0 + 0.1 * t, "U_v": 0.5 + 0.1 * t} for t in range(5)]
    assert rule.observe("r", rising) is None and rule.decide("r", 4, 6) is None  # outside the theory: no limit
    from orchestrator.theory.trial_compare import sweep_decision

    assert "U_s rises" in sweep_decision(rule.histories, "r")[0].reason


def test_theory_rule_gives_a_steady_fall_read_as_flat_no_prediction():
    """Measured (lr 5e-4, 8 rounds): after round 3 the fit said 'flat within noise' (3 degrees of freedom) and the
    rule predicted U_s would stay in [1.354, 1.478]; it fell to 1.096 by round 8. Still falling: no prediction."""
    S, V = [1.478, 1.447, 1.409, 1.354], [1.004, 0.971, 0.871, 0.903]
    hist = [{"round": t, "U_s": s, "U_v": v} for t, (s, v) in enumerate(zip(S, V))]
    from orchestrator.theory.fit import fit_gap

    assert fit_gap(range(4), S, V, n_boot=20, backtest=False).verdict.startswith("no decay")  # what the fit says
    rule = TheoryStopRule(min_rounds=4)
    rule.observe("best", history(GapModel(0.6, 0.9, 0.4, 0.6, 0.35), 8, 0.003))
    assert rule.observe("lr5e-4", hist) is None and rule.decide("lr5e-4", 3, 8) is None


def _cfg(temperature: float = 1.0, budget: int = 0) -> dict:
    from orchestrator.config.typed import to_dict

    sets = [f"generation.temperature={temperature}"]
    if budget:
        sets += ["external.strategy=uniform", f"external.budget={budget}"]
    return to_dict(config.load(None, sets))


def test_theory_rule_refuses_to_compare_trials_of_different_temperatures_and_says_so_once(said):
    """The flat trial would be stopped against the good one at the same temperature (above); at another
    temperature its U is on another scale: not compared, and the study says which key, once."""
    good = history(GapModel(0.6, 0.9, 0.4, 0.6, 0.35), 8, 0.003)
    flat = [{"round": t, "U_s": 1.48 + 0.002 * math.sin(t), "U_v": 1.0 + 0.002 * math.cos(t)} for t in range(9)]
    rule = TheoryStopRule(min_rounds=4)
    rule.observe("good", good, _cfg(0.7))
    for t in range(4, 8):
        rule.observe("flat", flat[:t], _cfg(1.0))
        assert rule.decide("flat", t - 1, 8) is None
    notes = [s for s in said if "generation.temperature" in s]
    assert len(notes) == 1 and "not comparable" in notes[0] and "max_new_tokens" not in notes[0], said
    same = TheoryStopRule(min_rounds=4)
    same.observe("good", good, _cfg(0.7))
    same.observe("flat", flat[:4], _cfg(0.7))
    assert same.decide("flat", 3, 8) is not None  # the same trials at one temperature: compared, stopped


def test_theory_rule_does_not_stop_a_trial_with_external_data_pending():
    good = history(GapModel(0.6, 0.9, 0.4, 0.6, 0.35), 8, 0.003)
    flat = [{"round": t, "U_s": 1.48 + 0.002 * math.sin(t), "U_v": 1.0 + 0.002 * math.cos(t),
             "external/count": 0.0} for t in range(9)]
    rule = TheoryStopRule(min_rounds=4)
    rule.observe("good", good, _cfg(), finished=True)
    rule.observe("flat", flat[:5], _cfg(budget=16))  # nothing of its 16 examples used yet
    assert rule.decide("flat", 4, 8) is None
    assert "external data is still to come" in rule.predictions["flat"].verdict
    spent = [dict(h, **{"external/count": 16.0 if h["round"] == 1 else 0.0}) for h in flat]
    rule.observe("flat", spent[:7], _cfg(budget=16))  # spent in round 1: decided on rounds 2..6 only
    assert rule.decide("flat", 6, 8) is not None
    assert rule.observe("flat", spent[:5], _cfg(budget=16)) is None  # rounds 2..4: too few after the jump


# ---- the sweep table -----------------------------------------------------------------------------------------------
def outcome(v, model: GapModel, rounds: int, acc: float, seconds: float, stop: dict | None = None) -> Outcome:
    S, V, _ = model.predict(np.arange(rounds + 1))
    recs = [RoundRecord(t, t, {"U_s": S[t], "U_v": V[t], "G": S[t] - V[t], "heldout_acc": acc + 0.01 * t,
                               "tokens_per_s": 1000.0 * v.cfg.resources.generation.actors},
                        {"generate": 2.0 / v.cfg.resources.generation.actors, "verify": 1.0, "round": 4.0 -
                         v.cfg.resources.generation.actors * 0.5}, {})
            for t in range(rounds + 1)]
    return Outcome(v, run_id=f"r{v.seed}", records=recs, seconds=seconds, stop=stop)


def test_sweep_table_per_point_seed_mean_fit_and_scaling_speedup(tmp_path):
    grid = {"resources.generation.actors": [1, 2]}
    base, vs = build_variants({"rounds": 5}, grid, 2)
    m = GapModel(0.5, 1.0, 0.4, 0.9, 0.6)
    outs = [outcome(v, m, 5, 0.40 + 0.02 * v.seed, 30.0 + v.seed) for v in vs]
    summary = SweepSummary("scaling")
    table = summary.summarize(outs, base, StudySpec("scaling", {}, grid, 2))
    rows = {r["point"]: r for r in table["rows"]}
    one, two = rows["resources.generation.actors=1"], rows["resources.generation.actors=2"]
    assert one["seeds"] == [0, 1] and one["final_acc"] == pytest.approx(0.46)
    assert one["final_acc_sd"] == pytest.approx(0.02 * math.sqrt(0.5))
    assert one["U_s_inf"] == pytest.approx(0.9, abs=1e-4) and one["rate"] == pytest.approx(0.5, abs=1e-4)
    assert one["G_inf"] == pytest.approx(0.3, abs=1e-4) and one["r2_U_s"] == pytest.approx(1.0, abs=1e-6)
    assert two["speedup_round"] == pytest.approx(3.5 / 3.0) and two["speedup_generate"] == pytest.approx(2.0)
    assert one["speedup_round"] == pytest.approx(1.0) and two["tokens_per_s"] == pytest.approx(2000.0)
    md = summary.to_markdown(table)
    assert "| resources.generation.actors=2 | 0,1 |" in md and "2.00x" in md
    paths = summary.write(table, tmp_path)
    assert {p.name for p in paths} >= {"scaling_table.json", "scaling_table.md", "scaling_table.csv",
                                       "scaling_resources.generation.actors.png"}


def test_sweep_table_shows_a_stopped_point_and_a_short_run():
    grid = {"training.lr": [2e-3, 1e-5]}
    base, vs = build_variants({"rounds": 8}, grid, 1)
    stop = {"round": 4, "rounds": 8, "prediction": {"limit": 1.47, "lo": 1.46, "hi": 1.49}, "seconds_saved": 40.0,
            "share_saved": 4 / 9, "reason": "theory: ..."}
    outs = [outcome(vs[0], GapModel(0.5, 1.0, 0.4, 0.9, 0.6), 8, 0.4, 90.0),
            outcome(vs[1], GapModel(0.5, 1.0, 0.4, 0.9, 0.6), 4, 0.4, 50.0, stop)]
    summary = SweepSummary()
    table = summary.summarize(outs, base, StudySpec("sweep", {}, grid, 1))
    slow = table["rows"][1]
    assert slow["stopped"][0]["round"] == 4 and slow["seconds_saved"] == 40.0
    assert table["summary"]["stopped"] == 1 and table["summary"]["seconds_saved"] == 40.0
    assert "seed 0 at 4/8: 1.4700, 40s (44% of rounds)" in summary.to_markdown(table)
    short = summary.summarize([outcome(vs[0], GapModel(0.5, 1.0, 0.4, 0.9, 0.6), 1, 0.4, 9.0)], base,
                              StudySpec("sweep", {}, grid, 1))
    assert short["rows"][0]["U_s_inf"] is None and "a fit needs 4" in summary.to_markdown(short)


def test_tune_scheduler_reads_each_trials_config_and_stops_only_comparable_trials(said):
    """The Tune scheduler itself (studies/theory_stop.make_scheduler on Ray's FIFOScheduler): a trial's scoring
    settings come from its variant config; the flat trial is stopped against the good one at the same temperature,
    not at another, and the study says why once."""
    from types import SimpleNamespace

    from ray.tune.schedulers import TrialScheduler

    from orchestrator.studies.theory_stop import make_scheduler

    good = history(GapModel(0.6, 0.9, 0.4, 0.6, 0.35), 8, 0.003)
    flat = [{"round": t, "U_s": 1.48 + 0.002 * math.sin(t), "U_v": 1.0 + 0.002 * math.cos(t)} for t in range(9)]
    for temp, expect in ((0.7, TrialScheduler.STOP), (1.0, TrialScheduler.CONTINUE)):
        stops = []
        sched = make_scheduler(TheoryStopRule(min_rounds=4), lambda trial, res, why, p: stops.append(why))
        trial = lambda key, t: SimpleNamespace(trial_id=key, config={"variant": {"config": _cfg(t)}})  # noqa: E731
        sched.on_trial_complete(None, trial("good", 0.7), {"history": good})
        got = sched.on_trial_result(None, trial("flat", temp), {"history": flat[:4], "round": 3, "rounds": 8})
        assert got == expect and len(stops) == (expect == TrialScheduler.STOP)
    assert sum("generation.temperature" in s for s in said) == 1
