"""Plots and a self-contained HTML page of one run: the measured uncertainties with the fitted gap dynamics
(docs/theory.md §2: points, fitted curves, limits, bootstrap band), the backtest (the limit predicted from rounds
0..K against the one from all rounds, every K from 4), and the accuracies per round. Where the theory has no
physical number the page shows the verdict (docs/theory.md §7).

`render` works on plain metric series (no MLflow), `build_report` reads a run through store/tracking.py, renders, and
logs the files to the run under `report/`.
"""
from __future__ import annotations

import base64
import html
import json
import math
from dataclasses import dataclass
from pathlib import Path

from orchestrator.errors import SvgapError
from orchestrator.report.plots import (ACCURACY, UNCERTAINTY, external_rounds, fmt, plot_accuracy,
                                       plot_backtest, plot_uncertainty)

METRICS = ["U_s", "U_v", "G", "U_s_per_token", "U_v_per_token", "G_per_token", "len_s", "len_v", *ACCURACY,
           "external/eta", "external/count"]


@dataclass
class ReportFiles:
    html: Path
    figures: list[Path]
    fit: object | None  # the FitResult, or None when there is no fit
    backtest: list | None = None  # theory.fit.backtest_table rows
    link: object | None = None  # theory.accuracy_link.AccuracyLink (None: no held-out accuracy logged)


def _fit(series: dict, quantity: str, eps: float, n_boot: int):
    """(FitResult or None, why-not text)."""
    from orchestrator.theory.fit import fit_gap

    cs, cv = UNCERTAINTY[quantity]
    if cs not in series or cv not in series:
        return None, f"the run logged no {cs}/{cv}"
    steps = sorted(set(series[cs]) & set(series[cv]))
    try:
        res = fit_gap(steps, [series[cs][t] for t in steps], [series[cv][t] for t in steps], eps=eps,
                      n_boot=n_boot, quantity=quantity)
    except SvgapError as e:
        return None, str(e)
    return res, ("" if res.decaying else res.verdict)


def _joint(series: dict, quantity: str):
    """docs/theory.md §5 for a run with external data: the gap model and gamma fitted jointly from its U_s, U_v and
    external/eta (jumps U_v <- U_v/(1+gamma eta)). (GammaFit or None, the simulated path or None, a sentence)."""
    from orchestrator.theory.allocation import simulate
    from orchestrator.theory.gamma import fit_gamma

    cs, cv = UNCERTAINTY[quantity]
    steps = sorted(set(series.get(cs, {})) & set(series.get(cv, {})))
    rounds = ", ".join(str(t) for t in external_rounds(series))
    eta = series["external/eta"]
    try:
        g = fit_gamma(steps, [series[cs][t] for t in steps], [series[cv][t] for t in steps], eta)
    except SvgapError as e:
        return None, None, f"external data in rounds {rounds}; gamma not fitted: {e}"
    path = simulate(g.model, g.gamma, [eta.get(t, 0.0) for t in range(steps[0], steps[-1])], start_round=steps[0])
    if path.verdict:
        return g, None, (f"external data in rounds {rounds}; gamma = {g.gamma:.4g} ({g.method} fit), but the "
                         f"solver's limit with this external data is not a number: {path.verdict}")
    return g, path, (f"external data in rounds {rounds}; gamma = {g.gamma:.4g} ({g.method} fit of U_s and U_v with "
                     f"the jumps U_v <- U_v/(1 + gamma eta_t), rmse {g.rmse:.3g}); with the data this run used, "
                     f"the solver's limit is U_s,inf = {path.U_s_inf:.4g} (dotted in the figure; the solid curves are "
                     f"the plain fit, which reads the jumps as self-improvement).")


def _backtest(series: dict, quantity: str, eps: float, n_boot: int) -> list | None:
    from orchestrator.theory.fit import backtest_table

    cs, cv = UNCERTAINTY[quantity]
    steps = sorted(set(series.get(cs, {})) & set(series.get(cv, {})))
    try:
        return backtest_table(steps, [series[cs][t] for t in steps], [series[cv][t] for t in steps], eps=eps,
                              n_boot=min(n_boot, 100)) or None
    except SvgapError:
        return None


def backtest_html(table: list[dict]) -> str:
    rows = ["<table><tr><th>K</th><th>rounds fitted</th><th>U_s,∞ (0..K)</th><th>95% CI</th><th>U_s,∞ (all)</th>"
            "<th>error</th></tr>"]
    for r in table:
        if r["U_s_inf"] is None:
            rows.append(f"<tr><th>{r['first']}</th><td>{r['n_rounds']}</td><td colspan=4 style='text-align:left'>"
                        f"{html.escape(r['verdict'])}</td></tr>")
            continue
        rows.append(f"<tr><th>{r['first']}</th><td>{r['n_rounds']}</td><td>{fmt(r['U_s_inf'])}</td>"
                    f"<td>[{fmt(r['ci'][0])}, {fmt(r['ci'][1])}]</td><td>{fmt(r['U_s_inf_all'])}</td>"
                    f"<td>{fmt(r['error'], '+.4g')}</td></tr>")
    return "".join(rows) + "</table>"


def _link(series: dict, quantity: str):
    """The accuracy link (theory/accuracy_link.py) of the run's rounds, None without a held-out accuracy."""
    from orchestrator.theory.accuracy_link import fit_accuracy_link

    cs = UNCERTAINTY[quantity][0]
    if cs not in series or "heldout_acc" not in series:
        return None
    steps = sorted(set(series[cs]) & set(series["heldout_acc"]))
    return fit_accuracy_link([series[cs][t] for t in steps], [series["heldout_acc"][t] for t in steps])


def link_html(link) -> str:
    if link.r2 is None:
        return f"<h2>Accuracy and U_s</h2><p>No accuracy link: {html.escape(link.why)}</p>"
    return ("<h2>Accuracy and U_s</h2><p>Held-out accuracy against the solver's uncertainty over the rounds, "
            "acc = 1/(1+exp(-(a − b U_s))) (least squares on the accuracy scale).</p><table><tr><th>a</th><th>b</th>"
            f"<th>R²</th><th>Spearman</th><th>rounds</th></tr><tr><td>{fmt(link.a)}</td><td>{fmt(link.b)}</td>"
            f"<td>{fmt(link.r2)}</td><td>{fmt(link.spearman)}</td><td>{link.n}</td></tr></table>")


def _html(title: str, res, why: str, figures: list[Path], series: dict, quantity: str, joint=None,
          backtest: list | None = None, link=None) -> str:
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             "<style>body{font-family:sans-serif;max-width:1200px;margin:2em auto}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#f4f4f4}"
             "img{max-width:100%}</style></head><body>",
             f"<h1>{html.escape(title)}</h1>",
             f"<p>Fitted quantity: <b>{html.escape(quantity)}</b> uncertainty (docs/theory.md §2, joint fit of U_s and U_v "
             f"with one shared rate).</p>"]
    if res is not None and res.decaying:
        lvl = f"{100 * res.ci_level:g}% CI"
        parts.append(f"<h2>Fit: {html.escape(res.verdict)}</h2><table><tr><th>quantity</th><th>value</th>"
                     f"<th>{lvl}</th></tr>")
        for k in ("rate", "alpha_prime", "beta_prime", "delta", "U_s_inf", "U_v_inf", "G_inf", "alpha_over_beta",
                  "sensitivity"):
            lo, hi = res.ci.get(k, [None, None])
            parts.append(f"<tr><th>{k}</th><td>{fmt(getattr(res, k))}</td><td>[{fmt(lo)}, {fmt(hi)}]</td></tr>")
        te = res.rounds_to_eps
        parts.append(f"<tr><th>rounds to ε={te['eps']:g}</th><td>{fmt(te['rounds'])}</td>"
                     f"<td>[{fmt(res.ci.get('rounds_to_eps', [None])[0])}, "
                     f"{fmt(res.ci.get('rounds_to_eps', [None, None])[1])}]</td></tr>")
        for k, v in res.r2.items():
            parts.append(f"<tr><th>R² {k}</th><td>{fmt(v)}</td><td></td></tr>")
        parts.append(f"<tr><th>rounds fitted</th><td>{res.n_rounds}</td><td></td></tr></table>")
        parts.append(f"<details><summary>fit JSON</summary><pre>{html.escape(json.dumps(res.to_json(), indent=2))}"
                     f"</pre></details>")
    else:
        parts.append(f"<h2>No fit</h2><p>{html.escape(why)}</p>")
    if res is not None and res.decaying:
        parts.append("<p>sensitivity = ∂U_s,∞/∂G_0 at fixed U_v(0) = −β/(α−β) (docs/theory.md §2): how much a "
                     "larger initial gap lowers the solver's limit.</p>")
    if link is not None:
        parts.append(link_html(link))
    if joint is not None:
        parts.append(f"<h2>External data</h2><p>{html.escape(joint[2])}</p>")
    if backtest:
        parts.append("<h2>Backtest: the limit predicted early</h2><p>U_s,∞ fitted on rounds 0..K against the one "
                     "fitted on all rounds (docs/theory.md §6).</p>" + backtest_html(backtest))
    for f in figures:
        b64 = base64.b64encode(f.read_bytes()).decode("ascii")
        parts.append(f"<h2>{html.escape(f.stem)}</h2><img alt='{html.escape(f.stem)}' "
                     f"src='data:image/png;base64,{b64}'>")
    names = [m for m in METRICS if m in series]
    steps = sorted({s for m in names for s in series[m]})
    parts.append("<h2>Per round</h2><table><tr><th>round</th>" + "".join(f"<th>{html.escape(m)}</th>" for m in names)
                 + "</tr>")
    for s in steps:
        parts.append(f"<tr><th>{s}</th>" + "".join(f"<td>{fmt(series[m].get(s))}</td>" for m in names) + "</tr>")
    parts.append("</table></body></html>")
    return "\n".join(parts)


def render(series: dict[str, dict[int, float]], out_dir: str | Path, *, title: str, quantity: str = "total",
           eps: float = 0.05, n_boot: int = 200) -> ReportFiles:
    """Write uncertainty.png, accuracy.png (if any accuracy was logged) and report.html into out_dir."""
    if quantity not in UNCERTAINTY:
        raise SvgapError(f"quantity must be one of {', '.join(UNCERTAINTY)}, got {quantity!r}")
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise SvgapError(f"cannot create report folder {out}: {e}") from None
    res, why = _fit(series, quantity, eps, n_boot)
    figures = []
    cs, cv = UNCERTAINTY[quantity]
    joint = _joint(series, quantity) if external_rounds(series) and cs in series and cv in series else None
    if cs in series and cv in series:
        figures.append(out / "uncertainty.png")
        plot_uncertainty(series, res, quantity, title, figures[-1], joint)
    if plot_accuracy(series, title, out / "accuracy.png"):
        figures.append(out / "accuracy.png")
    table = _backtest(series, quantity, eps, n_boot)
    if table and plot_backtest(table, out / "backtest.png", title):
        figures.append(out / "backtest.png")
    link = _link(series, quantity)
    if link is not None:
        (out / "accuracy_link.json").write_text(json.dumps(link.to_json(), indent=1))
    page = out / "report.html"
    page.write_text(_html(title, res, why, figures, series, quantity, joint, table, link), encoding="utf-8")
    return ReportFiles(page, figures, res, table, link)


def build_report(run_id: str, out_dir: str | Path | None = None, *, uri: str | None = None,
                 quantity: str = "total", eps: float = 0.05, n_boot: int = 200, log: bool = True) -> ReportFiles:
    """Read run `run_id` from MLflow, render the report into out_dir (default runs/<run_id>/report) and, with
    `log`, attach the files to the run as artifacts under report/."""
    from orchestrator.store import mirror, tracking

    if not (isinstance(eps, (int, float)) and math.isfinite(eps) and eps > 0):
        raise SvgapError(f"--eps must be a positive number, got {eps!r}")
    run = tracking.get_run(run_id, uri)
    series = tracking.metric_series(run_id, METRICS, uri)
    if not series:
        raise SvgapError(f"run {run_id} logged none of the round metrics ({', '.join(METRICS[:3])}, ...)")
    name = getattr(getattr(run, "info", None), "run_name", None) or run_id
    files = render(series, out_dir or Path("runs") / run_id / "report", title=f"svgap run {name} ({run_id[:8]})",
                   quantity=quantity, eps=eps, n_boot=n_boot)
    if log:
        extra = [files.html.parent / "accuracy_link.json"] if files.link is not None else []
        for path in [*files.figures, files.html, *extra]:  # only what this report wrote, not the rest of out_dir
            mirror.log_artifact(run_id, path, "report", uri)
        if files.link is not None and files.link.r2 is not None:  # at the last round the link was fitted on
            last = max(series["heldout_acc"])
            mirror.log_metrics(run_id, {"report/accuracy_r2": files.link.r2, "report/accuracy_b": files.link.b,
                                        "report/accuracy_spearman": files.link.spearman}, last, uri)
    return files
