"""`svgap plan`: given a fitted gap model and gamma, predict the solver under each allocation of a limited
external-data budget (docs/theory.md §5) with a 95 % interval per strategy, name the best by the objective and say
whether it can be told apart from the runner-up under the fit (theory/intervals.py)."""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from orchestrator.commands.fit import add_source_args, fit_from_args
from orchestrator.errors import SvgapError


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("plan", help="plan an external-data budget over rounds (docs/theory.md §5)")
    add_source_args(p, fit_json=True)
    p.add_argument("--gamma", type=float, default=None,
                   help="strength of external data (> 0); omitted with --run: fitted from the run's external/eta")
    p.add_argument("--rounds", type=int, required=True, metavar="T", help="rounds to spread the budget over")
    p.add_argument("--strategies", default="early,uniform,late",
                   help="comma-separated named strategies: early, uniform, late (default: all three)")
    p.add_argument("--shares", default=None, metavar="E0,E1,...",
                   help="an explicit allocation, one share per round summing to 1 (planned as 'explicit')")
    p.add_argument("--objective", choices=("limit", "horizon"), default="limit",
                   help="rank by predicted U_s,inf (limit, default) or U_s after the T rounds (horizon)")
    p.add_argument("--start-round", type=int, default=0, help="round the planned rounds start at (default 0)")
    p.add_argument("--budget", type=int, default=None, metavar="N",
                   help="the external examples this plan spends; with --run, refused when the run's gamma was "
                        "fitted at another budget")
    p.add_argument("--json", action="store_true", help="print the plan as JSON")
    return p


def _load_fit_json(path: str):
    from orchestrator.theory.fit import FitResult

    p = Path(path)
    if not p.is_file():
        raise SvgapError(f"fit file not found: {p}")
    try:
        data = json.loads(p.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SvgapError(f"fit file {p} is not valid JSON: {str(e).splitlines()[0]}") from None
    try:
        return FitResult.from_json(data)
    except SvgapError as e:
        raise SvgapError(f"fit file {p}: {e}") from None


def _external_fit(args: argparse.Namespace):
    """For a run that used external data: gamma and the gap model fitted jointly (docs/theory.md §5), else None.

    A plain fit_gap of such a run would read the external jumps as self-improvement and plan with a wrong model.
    """
    from orchestrator.store import tracking
    from orchestrator.commands.fit import COLUMNS
    from orchestrator.theory.gamma import fit_gamma

    cs, cv = COLUMNS[args.quantity]
    series = tracking.metric_series(args.run, [cs, cv, "external/eta"], args.tracking_uri)
    steps = sorted(set(series.get(cs, {})) & set(series.get(cv, {})))
    eta = series.get("external/eta", {})
    if not steps or not any(v > 0 for t, v in eta.items() if t < steps[-1]):
        return None
    try:
        g = fit_gamma(steps, [series[cs][t] for t in steps], [series[cv][t] for t in steps], eta)
    except SvgapError as e:
        raise SvgapError(f"run {args.run} used external data; fitting its gap model with gamma: {e}") from None
    g.eta = {t: v for t, v in eta.items() if t < steps[-1]}
    g.budget = tracking.get_run(args.run, args.tracking_uri).data.params.get("external.budget")
    return g


def _n(x, fmt=".4f") -> str:
    return "-" if x is None else format(x, fmt)


def _ci(ci) -> str:
    return "" if not ci or None in ci else f"[{ci[0]:.4f}, {ci[1]:.4f}]"


def format_plan(pl) -> str:
    j = pl.to_json()
    key = "U_s_inf" if pl.objective == "limit" else "U_s_T"
    lines = [f"plan over {pl.rounds} rounds from round {pl.start_round}, gamma {pl.gamma:.4g}, "
             f"objective {pl.objective} (lower U_s is better)"]
    if pl.verdict:
        return "\n".join(lines + [f"  {pl.verdict}"])
    lines.append(f"  {'strategy':<12}{'U_s at T':>12}{'U_s,inf':>12}  {'95% interval (' + key + ')':<28}{'J':>8}   eta")
    for name, o in j["strategies"].items():
        eta = " ".join(f"{e:.2f}" for e in o["eta"])
        mark = "  <- best" if name == j["best"] else (f"  ({o['vs_best']})" if o.get("vs_best") else "")
        if o.get("verdict"):
            lines.append(f"  {name:<12}{o['verdict']}")
            continue
        lines.append(f"  {name:<12}{_n(o['U_s_T']):>12}{_n(o['U_s_inf']):>12}  {_ci((o.get('ci') or {}).get(key)):<28}"
                     f"{_n(o['J']):>8}   {eta}{mark}")
    b = j["baseline"]
    base = b.get("verdict") or f"{_n(b['U_s_T']):>12}{_n(b['U_s_inf']):>12}"
    lines.append(f"  {'no external':<12}{base}")
    lines.append(f"  {pl.why}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from orchestrator.theory.allocation import plan
    from orchestrator.theory.gamma import gamma_caveat
    from orchestrator.theory.intervals import propagate, samples_from_rows, widening

    if args.gamma is not None and not (math.isfinite(args.gamma) and args.gamma > 0):
        raise SvgapError(f"--gamma must be > 0, got {args.gamma:g}")
    if args.rounds < 1:
        raise SvgapError(f"--rounds must be >= 1, got {args.rounds}")
    if args.start_round < 0:
        raise SvgapError(f"--start-round must be >= 0, got {args.start_round}")
    strategies: dict[str, list[float]] | list[str]
    names = [s.strip() for s in args.strategies.split(",") if s.strip()]
    if args.shares is not None:
        try:
            shares = [float(x) for x in args.shares.split(",")]
        except ValueError:
            raise SvgapError(f"--shares: {args.shares!r} is not a comma-separated list of numbers") from None
        from orchestrator.theory.allocation import check_shares, strategy_shares

        strategies = {n: strategy_shares(n, args.rounds) for n in names}
        strategies["explicit"] = check_shares(shares, args.rounds, "--shares")
    else:
        strategies = names
    if args.budget is not None and args.budget < 1:
        raise SvgapError(f"--budget must be >= 1, got {args.budget}")
    ext = _external_fit(args) if args.run else None
    note = None
    if ext is not None:  # the joint fit's samples carry gamma's uncertainty unless --gamma fixes it
        model, gamma = ext.model, args.gamma if args.gamma is not None else ext.gamma
        rows = ext.samples
        samples = samples_from_rows(rows, gamma if args.gamma is not None or rows is None else rows[:, 5])
        shape_widen, note = gamma_caveat(None if args.gamma is not None else ext.eta,
                                         None if ext.budget is None else float(ext.budget), args.budget)
        widen = widening(ext.n_rounds) * shape_widen
    else:
        if args.gamma is None:
            raise SvgapError("--gamma is required (only --run of a run that used external data can fit it)")
        model, gamma = (_load_fit_json(args.fit) if args.fit else fit_from_args(args, n_boot=200)), args.gamma
        samples, widen = samples_from_rows(model.boot, gamma), widening(model.n_rounds)
        note = gamma_caveat(None, None, None)[1]
    pl = plan(model, gamma, args.rounds, strategies, args.objective, start_round=args.start_round)
    propagate(pl, samples, widen=widen)
    print(json.dumps({**pl.to_json(), "gamma_note": note}, indent=2) if args.json else
          format_plan(pl) + f"\n  {note}")
    return 0
