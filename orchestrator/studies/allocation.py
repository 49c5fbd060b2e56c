"""The allocation study behind `svgap allocate` (docs/theory.md §5): a study (orchestrator/studies) over
external.strategy x seeds with the same budget M of external data, and its paper-style table.

Table, per strategy (means over seeds, ± the standard deviation over seeds):
    initial / final held-out accuracy (rounds 0 and T), gain of the final accuracy over `none`,
    fitted U_s,inf (for `none`: theory.fit.fit_gap on rounds 0..T; for a run with external data: the gap model and
    that run's γ simulated through its own allocation, so the jumps are not misread as self-improvement),
    fitted γ (theory.allocation.fit_gamma on the run's U_s/U_v and external/eta, with the gap model fitted on the
    `none` run of the same seed), predicted U_s at round T under the run's realised allocation (the `none` model and
    the median γ over all runs), and the predicted and observed ranks.
Summary: the spread (max - min of the seed-mean final held-out accuracy) between external strategies next to their
mean gain over `none` -- the paper's "the timing barely matters" is spread << gain.
Where the theory has no physical number for a run (a fit outside alpha > beta >= 0, a negative limit or gap, a
failed or bounded gamma fit: docs/theory.md §7) its cell shows the verdict word instead, and the notes give the
whole verdict. Pure data in, plain dicts/text out.
"""
from __future__ import annotations

import copy
import json
import math
import statistics
from pathlib import Path

from orchestrator.config import ExperimentConfig
from orchestrator.errors import SvgapError
from orchestrator.studies.allocation_text import to_csv, to_markdown
from orchestrator.studies.variants import Outcome, Variant
from orchestrator.theory import verdicts as vd

STRATEGIES = ("none", "early", "uniform", "late", "explicit", "planned")
DEFAULT_STRATEGIES = ("none", "early", "uniform", "late")
AXIS = "external.strategy"


def parse_strategies(text: str) -> list[str]:
    names = [s.strip() for s in text.split(",") if s.strip()]
    if not names:
        raise SvgapError("--strategies: name at least one of " + ", ".join(STRATEGIES))
    for n in names:
        if n not in STRATEGIES:
            raise SvgapError(f"--strategies: unknown strategy {n!r} (choose from {', '.join(STRATEGIES)})")
    if len(set(names)) != len(names):
        raise SvgapError(f"--strategies: duplicate strategy in {text!r}")
    return names


def study_data(data: dict, budget: int | None, strategies: list[str]) -> tuple[dict, dict[str, list]]:
    """The base config mapping (with --budget) and the study's grid: one axis, external.strategy."""
    from orchestrator import config as config_mod

    base_data = copy.deepcopy(data)
    if budget is not None:
        if budget < 1:
            raise SvgapError(f"--budget must be >= 1, got {budget}")
        base_data.setdefault("external", {})["budget"] = budget
    base = config_mod.resolve(base=base_data)
    if any(s != "none" for s in strategies) and base.external.budget < 1:
        raise SvgapError("--budget: required (the config's external.budget is 0)")
    return base_data, {AXIS: list(strategies)}


def variant(strategy: str, seed: int, cfg: ExperimentConfig) -> Variant:
    """One experiment of the study, as build_variants makes it (for tables built from records)."""
    return Variant({AXIS: strategy}, seed, cfg, strategy)


class AllocationSummary:
    """The study's table maker (the interface of studies.table.SweepSummary)."""
    tag = "allocation_study"

    def __init__(self, kind: str = "allocation") -> None:
        self.kind = kind

    def name(self, spec, base) -> str:
        return f"allocate M={base.external.budget}"

    @staticmethod
    def point_name(point: dict) -> str:
        return str(point[AXIS])

    def summarize(self, outcomes: list[Outcome], base: ExperimentConfig, spec=None) -> dict:
        table = summarize(outcomes, base)
        table["runs"] = [{"strategy": o.variant.strategy, "seed": o.variant.seed, "run_id": o.run_id,
                          "seconds": o.seconds, "error": o.error} for o in outcomes]
        return table

    def to_markdown(self, table: dict) -> str:
        return to_markdown(table)

    def write(self, table: dict, folder: Path) -> list[Path]:
        from orchestrator import redact

        files = {"allocation_table.json": json.dumps(redact.data(table), indent=1),
                 "allocation_table.md": to_markdown(table), "allocation_table.csv": to_csv(table)}
        for name, text in files.items():
            (folder / name).write_text(redact.text(text))
        return [folder / n for n in files]

    def metrics(self, table: dict) -> dict[str, float]:
        s = table["summary"]
        out = {f"final_acc/{x['strategy']}": x["final_acc"] for x in table["rows"] if x["final_acc"] is not None}
        out.update({k: s[k] for k in ("external_spread", "external_mean_gain", "gamma_pooled", "wall_s")
                    if s.get(k) is not None})
        return out


# ---- the table ------------------------------------------------------------------------------------------------------
def _mean_sd(xs: list[float]) -> tuple[float | None, float | None]:
    """Mean and s.d. over the seeds that have a value; the s.d. is None (not 0) when only one seed has one."""
    xs = [x for x in xs if x is not None and math.isfinite(x)]
    if not xs:
        return None, None
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else None)


def _have(xs: list) -> int:
    return sum(x is not None and math.isfinite(x) for x in xs)


def _series(records: list, quantity: str) -> tuple[list[int], list[float], list[float]]:
    sfx = "" if quantity == "total" else "_per_token"
    return ([r.round for r in records], [r.metrics["U_s" + sfx] for r in records],
            [r.metrics["U_v" + sfx] for r in records])


def _eta(records: list, rounds: int) -> list[float]:
    by = {r.round: r.metrics.get("external/eta", 0.0) for r in records}
    return [float(by.get(t, 0.0)) for t in range(rounds)]


def summarize(outcomes: list[Outcome], base: ExperimentConfig) -> dict:
    """The study table (rows per strategy) and its summary, as plain JSON-able data."""
    quantity = base.fit.quantity
    notes: list[str] = []
    strategies = list(dict.fromkeys(o.variant.strategy for o in outcomes))
    per = {(o.variant.strategy, o.variant.seed): _run_row(o, base, quantity, notes)
           for o in outcomes if o.error is None and o.records}
    for (s, seed), row in per.items():
        if s != "none" and any(row["eta"]):
            _fit_run_gamma(s, seed, row, per, notes)
    gammas = [r["gamma"] for r in per.values() if r["gamma"] is not None]
    gamma = statistics.median(gammas) if gammas else None
    predicted = _predicted(per, strategies, gamma, base, notes)
    rows = [_strategy_row(s, per, outcomes, predicted) for s in strategies]
    none_final = next((x["final_acc"] for x in rows if x["strategy"] == "none"), None)
    for x in rows:
        x["gain_over_none"] = (None if none_final is None or x["final_acc"] is None or x["strategy"] == "none"
                               else x["final_acc"] - none_final)
    observed, pred_order = _rank(rows)
    ext = [x for x in rows if x["strategy"] != "none" and x["final_acc"] is not None]
    summary = {
        "budget": base.external.budget, "rounds": base.rounds, "quantity": quantity, "gamma_pooled": gamma,
        "observed_order": observed, "predicted_order": pred_order,
        "external_spread": (max(x["final_acc"] for x in ext) - min(x["final_acc"] for x in ext)) if ext else None,
        "external_mean_gain": (statistics.fmean(x["gain_over_none"] for x in ext)
                               if ext and none_final is not None else None),
        "all_external_beat_none": (all(x["gain_over_none"] > 0 for x in ext) if ext and none_final is not None
                                   else None),
        "notes": notes,
    }
    return {"rows": rows, "summary": summary}


def _run_row(o: Outcome, base: ExperimentConfig, quantity: str, notes: list[str]) -> dict:
    """One finished run's accuracies, series and plain gap fit (kept only when it decays: a run with external
    data gets its limit from gamma instead, _fit_run_gamma)."""
    from orchestrator.theory.fit import fit_gap

    t, S, V = _series(o.records, quantity)
    row = {"initial": o.records[0].metrics["heldout_acc"], "final": o.records[-1].metrics["heldout_acc"],
           "rounds": t, "U_s": S, "U_v": V, "eta": _eta(o.records, base.rounds), "fit": None, "gamma": None,
           "U_s_inf": None, "verdict": None}
    try:
        f = fit_gap(t, S, V, n_boot=0, quantity=quantity, backtest=False)
        if f.decaying:
            row["fit"], row["U_s_inf"] = f, f.U_s_inf
        elif not any(row["eta"]):
            row["verdict"] = f.verdict
            notes.append(f"fit of {o.variant.strategy} seed {o.variant.seed}: {f.verdict}")
    except SvgapError as e:
        row["verdict"] = str(e)
    return row


def _fit_run_gamma(s: str, seed: int, row: dict, per: dict, notes: list[str]) -> None:
    """gamma of one external run: the `none` run of the same seed gives the self-improvement model."""
    from orchestrator.theory.allocation import outside_theory, simulate
    from orchestrator.theory.gamma import fit_gamma

    model = per.get(("none", seed), {}).get("fit")
    if model is not None and outside_theory(model.model):
        model = None  # a `none` model outside alpha > beta cannot carry gamma: fit this run jointly instead
    eta = dict(enumerate(row["eta"]))
    # a plain fit of this run would read the external jumps as self-improvement: its limit comes from the
    # gap model with gamma, simulated through the run's own allocation (docs/theory.md §5); no joint fit: no limit
    row["fit"] = row["U_s_inf"] = None
    try:
        if model is not None:
            g = fit_gamma(row["rounds"], row["U_s"], row["U_v"], eta, model=model)
        elif len(row["rounds"]) >= 6:
            g = fit_gamma(row["rounds"], row["U_s"], row["U_v"], eta)
        else:
            return
    except SvgapError as e:
        notes.append(f"gamma of {s} seed {seed}: {e}")
        row["verdict"] = str(e)
        return
    row["gamma"] = g.gamma
    sim = simulate(g.model, g.gamma, row["eta"])
    row["U_s_inf"], row["verdict"] = sim.U_s_inf, sim.verdict
    if sim.verdict:
        notes.append(f"limit of {s} seed {seed} with gamma {g.gamma:.3g}: {sim.verdict}")


def _predicted(per: dict, strategies: list[str], gamma: float | None, base: ExperimentConfig,
               notes: list[str]) -> dict[str, list[float]]:
    """Predicted U_s at round T per strategy: each seed's `none` model, the pooled gamma, each run's realised
    allocation."""
    predicted: dict[str, list[float]] = {s: [] for s in strategies}
    if gamma is not None:
        for seed in sorted({sd for (_, sd) in per}):
            _predict_seed(seed, per, strategies, gamma, base, notes, predicted)
    elif "none" in strategies:
        notes.append("no gamma could be fitted: no predicted ordering")
    else:
        notes.append("no `none` strategy in the study: no gap model to fit gamma on or predict with")
    return predicted


def _predict_seed(seed: int, per: dict, strategies: list[str], gamma: float, base: ExperimentConfig,
                  notes: list[str], predicted: dict[str, list[float]]) -> None:
    from orchestrator.theory.allocation import plan

    model = per.get(("none", seed), {}).get("fit")
    if model is None:
        return
    shares = {s: per[(s, seed)]["eta"] for s in strategies
              if s != "none" and (s, seed) in per and abs(sum(per[(s, seed)]["eta"]) - 1) < 1e-6}
    try:
        pl = plan(model, gamma, base.rounds, shares, "horizon") if shares else None
    except SvgapError as e:
        notes.append(f"prediction for seed {seed}: {e}")
        return
    if pl is not None and pl.verdict:
        notes.append(f"prediction for seed {seed}: {pl.verdict}")
    elif pl is not None:
        for s, out in pl.outcomes.items():
            if out.verdict:
                notes.append(f"prediction of {s} for seed {seed} (pooled gamma {gamma:.3g}): {out.verdict}")
            else:
                predicted[s].append(out.U_s_T)
        if pl.baseline.verdict is None:
            predicted.setdefault("none", []).append(pl.baseline.U_s_T)


def _strategy_row(s: str, per: dict, outcomes: list[Outcome], predicted: dict[str, list[float]]) -> dict:
    """One strategy's row: means and s.d. over its seeds."""
    seeds = sorted(sd for (st, sd) in per if st == s)
    r = [per[(s, sd)] for sd in seeds]
    failed = [o.variant.seed for o in outcomes if o.variant.strategy == s and o.error is not None]
    ini, ini_sd = _mean_sd([x["initial"] for x in r])
    fin, fin_sd = _mean_sd([x["final"] for x in r])
    lim, lim_sd = _mean_sd([x["U_s_inf"] for x in r])
    gam, gam_sd = _mean_sd([x["gamma"] for x in r])
    pred, _ = _mean_sd(predicted.get(s, []))
    words = [w for w in (vd.word_of(x["verdict"]) for x in r) if w]
    return {"strategy": s, "seeds": seeds, "failed_seeds": failed,
            "verdicts": sorted(set(words)), "verdict_seeds": len(words),
            "initial_acc": ini, "initial_acc_sd": ini_sd, "final_acc": fin, "final_acc_sd": fin_sd,
            "U_s_inf": lim, "U_s_inf_sd": lim_sd, "U_s_inf_seeds": _have([x["U_s_inf"] for x in r]),
            "gamma": gam, "gamma_sd": gam_sd, "gamma_seeds": _have([x["gamma"] for x in r]),
            "predicted_U_s_T": pred, "eta": [round(e, 4) for e in r[0]["eta"]] if r else None}


def _rank(rows: list[dict]) -> tuple[list[str], list[str]]:
    """Observed order (final accuracy, best first) and predicted order (U_s at T, lowest first); sets each row's
    ranks."""
    observed = [x["strategy"] for x in sorted((x for x in rows if x["final_acc"] is not None),
                                              key=lambda x: -x["final_acc"])]
    pred_order = [x["strategy"] for x in sorted((x for x in rows if x["predicted_U_s_T"] is not None),
                                                key=lambda x: x["predicted_U_s_T"])]
    for x in rows:
        x["observed_rank"] = observed.index(x["strategy"]) + 1 if x["strategy"] in observed else None
        x["predicted_rank"] = pred_order.index(x["strategy"]) + 1 if x["strategy"] in pred_order else None
    return observed, pred_order
