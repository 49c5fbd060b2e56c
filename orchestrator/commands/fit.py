"""`svgap fit`: fit the solver-verifier gap dynamics (docs/theory.md §2) to a CSV file or an MLflow run, print the
limit U_s,inf with CIs, the sensitivity to the initial gap, R², rounds to eps and (with --first) the backtest table:
the limit predicted from rounds 0..K against the one from all rounds, every K from 4 (docs/theory.md §6). Also home
of the series loaders that `svgap plan` shares."""
from __future__ import annotations

import argparse
import csv
import json
import math
from pathlib import Path

from orchestrator.errors import SvgapError

COLUMNS = {"total": ("U_s", "U_v"), "per_token": ("U_s_per_token", "U_v_per_token")}


def add_source_args(p: argparse.ArgumentParser, *, fit_json: bool = False) -> None:
    """--csv FILE | --run RUN_ID (| --fit FIT.json), plus --quantity and --tracking-uri."""
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--csv", metavar="FILE", help="CSV with columns round,U_s,U_v (others ignored)")
    src.add_argument("--run", metavar="RUN_ID", help="MLflow run that logged U_s/U_v per round (step = round), or "
                                                   "a run folder (tracking.out_dir/RUN_ID)")
    if fit_json:
        src.add_argument("--fit", metavar="FIT.json", help="a saved `svgap fit --json` result")
    p.add_argument("--quantity", choices=tuple(COLUMNS), default="total",
                   help="total NLL (default, as in the paper) or per-token mean (columns/metrics *_per_token)")
    p.add_argument("--tracking-uri", default=None, help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI or "
                                                       "sqlite:///mlflow.db)")


def read_csv(path: str, quantity: str = "total") -> tuple[list[int], list[float], list[float]]:
    """rounds, U_s, U_v from a CSV file; problems are one-line errors naming the file, line and column."""
    p = Path(path)
    if not p.is_file():
        raise SvgapError(f"CSV file not found: {p}")
    cs, cv = COLUMNS[quantity]
    try:
        with p.open(newline="") as fh:
            reader = csv.DictReader(fh)
            header = [h.strip() for h in (reader.fieldnames or [])]
            missing = [c for c in ("round", cs, cv) if c not in header]
            if missing:
                raise SvgapError(f"CSV file {p}: missing column(s) {', '.join(missing)} "
                                 f"(has: {', '.join(header) or 'nothing'})")
            reader.fieldnames = header
            cols: dict[str, list[float]] = {"round": [], cs: [], cv: []}
            for row in reader:
                for c in cols:
                    raw = (row.get(c) or "").strip()
                    try:
                        val = float(raw)
                    except ValueError:
                        raise SvgapError(f"CSV file {p} line {reader.line_num}: column {c}: {raw!r} is not a number")
                    if not math.isfinite(val):
                        raise SvgapError(f"CSV file {p} line {reader.line_num}: column {c} is not finite ({raw})")
                    cols[c].append(val)
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise SvgapError(f"cannot read CSV file {p}: {e}") from None
    return cols["round"], cols[cs], cols[cv]


def read_run(run_id: str, quantity: str = "total", uri: str | None = None) -> tuple[list[int], list[float], list[float]]:
    """rounds, U_s, U_v of an MLflow run: the steps at which both metrics were logged."""
    from orchestrator.store import tracking

    cs, cv = COLUMNS[quantity]
    series = tracking.metric_series(run_id, [cs, cv], uri)
    missing = [c for c in (cs, cv) if c not in series]
    if missing:
        raise SvgapError(f"run {run_id} logged no {', '.join(missing)} metric")
    steps = sorted(set(series[cs]) & set(series[cv]))
    return steps, [series[cs][t] for t in steps], [series[cv][t] for t in steps]


def load_series(args: argparse.Namespace):
    """(rounds, U_s, U_v, label) from --csv or --run."""
    from orchestrator.store.folder_series import is_run_folder, read_folder

    if getattr(args, "csv", None):
        return (*read_csv(args.csv, args.quantity), f"CSV file {args.csv}")
    if is_run_folder(args.run):
        f = read_folder(args.run, args.quantity)
        return f.rounds, f.U_s, f.U_v, f"run folder {args.run}"
    return (*read_run(args.run, args.quantity, args.tracking_uri), f"run {args.run}")


def fit_from_args(args: argparse.Namespace, *, first=None, eps: float = 0.05, n_boot: int = 200, seed: int = 0):
    from orchestrator.theory.fit import fit_gap

    rounds, U_s, U_v, label = load_series(args)
    try:
        return fit_gap(rounds, U_s, U_v, first=first, eps=eps, n_boot=n_boot, seed=seed, quantity=args.quantity)
    except SvgapError as e:
        raise SvgapError(f"{label}: {e}") from None


def stop_decision(args: argparse.Namespace):
    """The online stop rule's decision after the last round given (rounds <= --first with --first); on a run
    folder, the very decision the run took there (its last round, external data used and still to come)."""
    from orchestrator.store.folder_series import is_run_folder, read_folder
    from orchestrator.theory.decision import decide_run_stop, decide_stop

    if getattr(args, "run", None) and is_run_folder(args.run):
        f = read_folder(args.run, args.quantity, args.first)
        try:
            return decide_run_stop(f.rounds, f.U_s, f.U_v, threshold=args.stop_below, last_round=f.last_round,
                                   external_used=f.external_used, external_pending=f.external_pending)
        except SvgapError as e:
            raise SvgapError(f"--stop-below: {e}") from None
    rounds, U_s, U_v, label = load_series(args)
    if args.first is not None:
        keep = [i for i, r in enumerate(rounds) if r <= args.first]
        rounds, U_s, U_v = [rounds[i] for i in keep], [U_s[i] for i in keep], [U_v[i] for i in keep]
    try:
        return decide_stop(rounds, U_s, U_v, threshold=args.stop_below)
    except SvgapError as e:
        raise SvgapError(f"--stop-below: {e}") from None


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("fit", help="fit the gap dynamics (docs/theory.md §2): rate, limits, CIs, rounds to eps")
    add_source_args(p)
    p.add_argument("--first", type=int, default=None, metavar="K",
                   help="early prediction: fit rounds 0..K only; later rounds give the backtest")
    p.add_argument("--eps", type=float, default=0.05, help="eps of Corollary 3.2 (rounds until G is within eps)")
    p.add_argument("--n-boot", type=int, default=200, help="bootstrap replicates for the CIs (default 200)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    p.add_argument("--json", action="store_true", help="print the fit as JSON")
    p.add_argument("--stop-below", type=float, default=None, metavar="EPS",
                   help="also the stop decision a run with stop.when_predicted_gain_below: EPS would take after the "
                        "last round given (theory/decision.py): stop | continue | undetermined, with the reason")
    p.add_argument("--plot", metavar="FILE.png", default=None,
                   help="with --first: also draw the backtest (limit from rounds 0..K vs all rounds) into FILE.png")
    return p


def _f(x, fmt: str = ".4g") -> str:
    return "-" if x is None else format(x, fmt)


def format_fit(res) -> str:
    """The readable table of a FitResult."""
    rounds = res.fitted_on.get("rounds") or []
    span = f"rounds {rounds[0]}..{rounds[-1]}" if rounds else "?"
    lines = [f"fit of {res.fitted_on.get('quantity', 'total')} uncertainty on {span} ({res.n_rounds} rounds): "
             f"{res.verdict}"]
    if not res.decaying:
        return "\n".join(lines + format_backtest(res))
    lvl = f"{100 * res.ci_level:g}% CI"
    lines.append(f"  {'quantity':<18}{'value':>12}   {lvl}")
    names = {"rate": "rate r", "alpha_prime": "alpha'", "beta_prime": "beta'", "delta": "delta",
             "U_s_inf": "U_s,inf (limit)", "U_v_inf": "U_v,inf", "G_inf": "G_inf", "alpha_over_beta": "alpha/beta",
             "sensitivity": "dU_s,inf/dG_0"}
    for k, label in names.items():
        lo, hi = res.ci.get(k, [None, None])
        ci = f"[{_f(lo)}, {_f(hi)}]" if res.ci else ""
        lines.append(f"  {label:<18}{_f(getattr(res, k)):>12}   {ci}")
    r2 = res.r2
    lines.append(f"  R²  U_s {_f(r2.get('U_s'), '.4f')}  U_v {_f(r2.get('U_v'), '.4f')}  G {_f(r2.get('G'), '.4f')}")
    te = res.rounds_to_eps
    lines.append(f"  rounds to eps={te['eps']:g}: t > {_f(te['rounds'], '.2f')} (G within eps of G_inf)")
    if res.backtest:
        bt = res.backtest
        lines.append(f"  backtest on later rounds: U_s,inf error {_f(bt['U_s_inf_error'])} (vs fit on all rounds), "
                     f"max |U_s error| {_f(bt['max_abs_error_U_s'])}")
    return "\n".join(lines + format_backtest(res))


def format_backtest(res) -> list[str]:
    """The backtest table: the limit U_s,inf predicted from rounds 0..K for every K, against all rounds."""
    table = (res.backtest or {}).get("table")
    if not table:
        return []
    lvl = f"{100 * res.ci_level:g}% CI"
    out = [f"backtest: U_s,inf predicted from rounds 0..K vs fitted on all rounds "
           f"({_f(table[0]['U_s_inf_all'])})",
           f"  {'K':>3}{'rounds':>8}{'U_s,inf(0..K)':>15}   {lvl:<24}{'error':>10}"]
    for r in table:
        if r["U_s_inf"] is None:
            out.append(f"  {r['first']:>3}{r['n_rounds']:>8}   {r['verdict']}")
            continue
        ci = f"[{_f(r['ci'][0])}, {_f(r['ci'][1])}]"
        out.append(f"  {r['first']:>3}{r['n_rounds']:>8}{_f(r['U_s_inf']):>15}   {ci:<24}{_f(r['error'], '+.4g'):>10}")
    return out


def run(args: argparse.Namespace) -> int:
    if args.n_boot < 0:
        raise SvgapError(f"--n-boot must be >= 0, got {args.n_boot}")
    if args.plot is not None and args.first is None:
        raise SvgapError("--plot draws the backtest: it needs --first K")
    res = fit_from_args(args, first=args.first, eps=args.eps, n_boot=args.n_boot, seed=args.seed)
    stop = None if args.stop_below is None else stop_decision(args)
    if args.json:
        print(json.dumps({**res.to_json(), **({} if stop is None else {"stop": stop.to_json()})}, indent=2))
    else:
        print(format_fit(res) + ("" if stop is None else f"\nstop rule (gain below {stop.threshold:g}): "
                                                          f"{stop.decision}: {stop.reason}"))
    if args.plot is not None:
        from orchestrator.report.html import plot_backtest

        table = (res.backtest or {}).get("table") or []
        try:
            drawn = plot_backtest(table, Path(args.plot), "svgap fit --first " + str(args.first))
        except OSError as e:
            raise SvgapError(f"--plot: cannot write {args.plot}: {e}") from None
        if not args.json:
            print(f"backtest plot: {args.plot}" if drawn else "backtest plot: no K has a limit to draw")
    return 0
