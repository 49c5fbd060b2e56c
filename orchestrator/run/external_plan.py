"""The `planned` external-data strategy (scheduler.py): after the warm-up, fit the gap dynamics on the measured
rounds and choose the allocation of the budget over the remaining rounds, exactly as `svgap plan` would. Returns
data; the controller keeps plan.json (run folder, then MLflow)."""
from __future__ import annotations

from orchestrator.config import ExperimentConfig
from orchestrator.errors import SvgapError


def make_plan(cfg: ExperimentConfig, budget: int, t: int, records: list) -> tuple[list[float], dict, str]:
    """After warm-up round t: (the budget's shares of rounds t..T-1, plan.json's data, why in one line). Pure: the
    scheduler rounds the shares to counts and hands the plan to the controller, which keeps it."""
    from orchestrator.theory.allocation import STRATEGIES, plan, strategy_shares as named
    from orchestrator.theory.fit import fit_gap
    from orchestrator.theory.gamma import gamma_caveat
    from orchestrator.theory.intervals import propagate, samples_from_rows, widening

    ext, w, left = cfg.external, t, cfg.rounds - t
    suffix = "" if cfg.fit.quantity == "total" else "_per_token"
    recs = [r for r in records if r.round <= t]
    rounds = [r.round for r in recs]
    U_s = [r.metrics["U_s" + suffix] for r in recs]
    U_v = [r.metrics["U_v" + suffix] for r in recs]
    data: dict = {"start_round": w, "rounds": left, "budget": budget, "gamma": ext.gamma,
                  "objective": ext.objective, "quantity": cfg.fit.quantity,
                  "observed": {"rounds": rounds, "U_s": U_s, "U_v": U_v}}
    try:
        fit = fit_gap(rounds, U_s, U_v, n_boot=200, seed=cfg.seed, quantity=cfg.fit.quantity, backtest=False)
        data["fit"] = fit.to_json()
        if not fit.decaying:
            raise SvgapError(f"the warm-up fit has no decaying model ({fit.verdict})")
        pl = plan(fit, ext.gamma, left, list(STRATEGIES), ext.objective, start_round=w)
        if pl.best is None:
            raise SvgapError(pl.verdict)
        propagate(pl, samples_from_rows(fit.boot, ext.gamma), widen=widening(fit.n_rounds))
        data["gamma_note"] = gamma_caveat(None, None, None)[1] + f" (external.gamma; this run's budget {budget})"
    except SvgapError as e:
        shares = named("uniform", left)
        data.update(chosen="uniform", fallback=str(e), eta=shares)
        why = f"no plan ({e}); spending the budget uniformly over rounds {w}..{cfg.rounds - 1}"
    else:
        data.update(pl.to_json())
        shares = pl.shares[pl.chosen]
        data.update(chosen=pl.chosen, eta=shares,
                    equivalent_command=f"svgap plan --fit fit.json --gamma {ext.gamma!r} --rounds {left} "
                                       f"--start-round {w} --objective {ext.objective}")
        key = "U_s_inf" if ext.objective == "limit" else "U_s_T"
        ranked = sorted(pl.outcomes, key=lambda k: (getattr(pl.outcomes[k], key) is None,
                                                    getattr(pl.outcomes[k], key) or 0.0))
        cands = ", ".join(f"{k} {getattr(pl.outcomes[k], key):.4f}" if pl.outcomes[k].verdict is None
                          else f"{k} ({pl.outcomes[k].verdict.split(':')[0]})" for k in ranked)
        base = getattr(pl.baseline, key)
        label = "U_s,inf" if ext.objective == "limit" else f"U_s at round {cfg.rounds}"
        why = (f"plan after round {w} (fit rate {fit.rate:.3f}, U_s,inf {fit.U_s_inf:.4f}; gamma "
               f"{ext.gamma:g}): predicted {label}: {cands}; no external data {base:.4f} -> {pl.chosen} "
               f"({pl.why})")
    return shares, data, why


def planned_checks(cfg: ExperimentConfig) -> None:
    """`planned` needs γ, >= 4 measured rounds before its first allocation and a round left after the warm-up."""
    from orchestrator.theory.fit import MIN_ROUNDS

    ext = cfg.external
    if ext.gamma is None:
        raise SvgapError("external.gamma: required with external.strategy planned (the warm-up uses no external "
                         "data, so γ cannot be fitted in the run; fit it with `svgap plan --run` on an earlier run)")
    if ext.warmup_rounds + 1 < MIN_ROUNDS:
        raise SvgapError(f"external.warmup_rounds: {ext.warmup_rounds} warm-up rounds give "
                         f"{ext.warmup_rounds + 1} measured rounds before the plan; the fit needs {MIN_ROUNDS} "
                         f"(set warmup_rounds >= {MIN_ROUNDS - 1})")
    if ext.warmup_rounds >= cfg.rounds:
        raise SvgapError(f"external.warmup_rounds: {ext.warmup_rounds} leaves no training round for the budget "
                         f"(rounds is {cfg.rounds}; need warmup_rounds < rounds)")


