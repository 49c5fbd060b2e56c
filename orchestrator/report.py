"""Plots and a self-contained HTML page of one run: the measured uncertainties with the fitted gap dynamics
(docs/theory.md §2: points, fitted curves, limits, bootstrap band), the backtest (the limit predicted from rounds
0..K against the one from all rounds, every K from 4), and the accuracies per round. Where the theory has no
physical number the page shows the verdict (docs/theory.md §7).

`render` works on plain metric series (no MLflow), `build_report` reads a run through tracking.py, renders, and
logs the files to the run under `report/`.
"""
from __future__ import annotations

import base64
import html
import json
import math
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from orchestrator.errors import SvgapError  # noqa: E402

UNCERTAINTY = {"total": ("U_s", "U_v"), "per_token": ("U_s_per_token", "U_v_per_token")}
ACCURACY = {"acc_s": "solver (sampled candidate)", "acc_v": "verifier (BoN pick)", "pass_at_n": "pass@N",
            "heldout_acc": "held-out"}
METRICS = ["U_s", "U_v", "G", "U_s_per_token", "U_v_per_token", "G_per_token", "len_s", "len_v", *ACCURACY,
           "external/eta", "external/count"]
COLORS = {"U_s": "tab:blue", "U_v": "tab:orange", "G": "tab:green"}


@dataclass
class ReportFiles:
    html: Path
    figures: list[Path]
    fit: object | None  # the FitResult, or None when there is no fit
    backtest: list | None = None  # theory.fit.backtest_table rows


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


def _external_rounds(series: dict) -> list[int]:
    return [t for t, e in sorted(series.get("external/eta", {}).items()) if e > 0]


def _shade_external(ax, rounds: list[int], label: bool) -> None:
    for i, t in enumerate(rounds):
        ax.axvspan(t - 0.4, t + 0.4, color="0.85", zorder=0, label="external data (η>0)" if label and i == 0 else None)


def _plot_uncertainty(series: dict, res, quantity: str, title: str, path: Path, joint=None) -> None:
    cs, cv = UNCERTAINTY[quantity]
    steps = sorted(set(series.get(cs, {})) & set(series.get(cv, {})))
    t = np.asarray(steps, float)
    S = np.asarray([series[cs][s] for s in steps])
    V = np.asarray([series[cv][s] for s in steps])
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 5), dpi=110)
    ext = _external_rounds(series)
    _shade_external(ax1, ext, True)
    _shade_external(ax2, ext, False)
    ax1.plot(t, S, "o", color=COLORS["U_s"], label=f"{cs} measured (solver)")
    ax1.plot(t, V, "s", color=COLORS["U_v"], label=f"{cv} measured (verifier, BoN pick)")
    ax2.plot(t, S - V, "o", color=COLORS["G"], label="G = U_s − U_v measured")
    if res is not None and res.decaying:
        horizon = max(t[-1], min(res.rounds_to_eps["rounds"] or 0.0, 3 * max(t[-1], 1))) + 1
        tt = np.linspace(t[0], horizon, 300)
        us, uv, g = res.predict(tt)
        band = res.band(tt)
        lvl = f"{100 * res.ci_level:g}%"
        for ax, name, curve, lim, ci_key in ((ax1, "U_s", us, res.U_s_inf, "U_s_inf"),
                                             (ax1, "U_v", uv, res.U_v_inf, "U_v_inf"),
                                             (ax2, "G", g, res.G_inf, "G_inf")):
            c = COLORS[name]
            ax.plot(tt, curve, "-", color=c, label=f"{name} fit")
            if band:
                ax.fill_between(tt, *band[name], color=c, alpha=0.18, label=f"{name} {lvl} band")
            ci = res.ci.get(ci_key) or [None, None]
            ci_txt = f" [{ci[0]:.3g}, {ci[1]:.3g}]" if None not in ci else ""
            sub = {"U_s": "U_s,∞", "U_v": "U_v,∞", "G": "G_∞"}[name]
            ax.axhline(lim, ls="--", lw=1.2, color=c, label=f"limit {sub} = {lim:.4g}{ci_txt}")
            ax.text(tt[0], lim, f" {sub} = {lim:.3g}", color=c, fontsize=9, ha="left",
                    va="top" if name == "U_v" else "bottom", bbox=dict(fc="white", ec="none", alpha=0.8, pad=1))
        ax1.set_title(f"solver & verifier uncertainty: rate r = {res.rate:.3g}, R² U_s {_fmt(res.r2['U_s'], '.3f')}, "
                      f"U_v {_fmt(res.r2['U_v'], '.3f')}", fontsize=10)
        ax2.set_title(f"gap: G_∞ = {res.G_inf:.3g}, R² {_fmt(res.r2['G'], '.3f')}; within ε={res.rounds_to_eps['eps']:g} "
                      f"after t > {_fmt(res.rounds_to_eps['rounds'], '.1f')}", fontsize=10)
    else:
        why = "no fit" if res is None else res.verdict
        ax1.set_title(f"solver & verifier uncertainty ({why})", fontsize=10)
        ax2.set_title("gap", fontsize=10)
    if joint is not None and joint[1] is not None:  # the joint fit with gamma: its path through the jumps
        g, sim = joint[0], joint[1]
        ts = np.arange(int(t[0]), int(t[0]) + len(sim.U_s_path))
        ax1.plot(ts, sim.U_s_path, ":", color=COLORS["U_s"], lw=2, label=f"U_s joint fit with γ = {g.gamma:.3g}")
        ax1.plot(ts, sim.U_v_path, ":", color=COLORS["U_v"], lw=2, label="U_v joint fit (jumps included)")
        if sim.U_s_inf is not None:
            ax1.axhline(sim.U_s_inf, ls=":", lw=1.2, color="black", label=f"U_s,∞ with this external data = "
                                                                          f"{sim.U_s_inf:.4g}")
    unit = "total NLL per response (nats)" if quantity == "total" else "NLL per token (nats)"
    for ax in (ax1, ax2):
        ax.set_xlabel("round t")
        ax.set_ylabel(unit)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="upper right")
    if ext:
        title += "  — shaded: rounds with external data (solid: plain fit; dotted: joint fit with γ)"
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _plot_accuracy(series: dict, title: str, path: Path) -> bool:
    present = [k for k in ACCURACY if k in series]
    if not present:
        return False
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=110)
    _shade_external(ax, _external_rounds(series), True)
    for k in present:
        steps = sorted(series[k])
        ax.plot(steps, [series[k][s] for s in steps], "o-", label=f"{k}: {ACCURACY[k]}")
    ax.set_xlabel("round t")
    ax.set_ylabel("accuracy")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(f"accuracy per round — {title}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def _joint(series: dict, quantity: str):
    """docs/theory.md §5 for a run with external data: the gap model and gamma fitted jointly from its U_s, U_v and
    external/eta (jumps U_v <- U_v/(1+gamma eta)). (GammaFit or None, the simulated path or None, a sentence)."""
    from orchestrator.theory.allocation import simulate
    from orchestrator.theory.gamma import fit_gamma

    cs, cv = UNCERTAINTY[quantity]
    steps = sorted(set(series.get(cs, {})) & set(series.get(cv, {})))
    rounds = ", ".join(str(t) for t in _external_rounds(series))
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


def plot_backtest(table: list[dict], path: Path, title: str) -> bool:
    """U_s,inf from rounds 0..K (95 % CI bars) against the fit on all rounds; False when no K has a number."""
    pts = [r for r in table if r["U_s_inf"] is not None]
    full = next((r["U_s_inf_all"] for r in table if r["U_s_inf_all"] is not None), None)
    if not pts:
        return False
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=110)
    k = np.asarray([r["first"] for r in pts])
    y = np.asarray([r["U_s_inf"] for r in pts])
    lo = np.asarray([r["ci"][0] if r["ci"][0] is not None else v for r, v in zip(pts, y)])
    hi = np.asarray([r["ci"][1] if r["ci"][1] is not None else v for r, v in zip(pts, y)])
    ax.errorbar(k, y, yerr=[np.maximum(y - lo, 0.0), np.maximum(hi - y, 0.0)], fmt="o", color=COLORS["U_s"], capsize=3,
                label="U_s,∞ fitted on rounds 0..K (95% CI)")
    if full is not None:
        ax.axhline(full, ls="--", color="black", label=f"U_s,∞ fitted on all rounds = {full:.4g}")
    for r in table:
        if r["U_s_inf"] is None:
            ax.annotate(r["verdict"].split(":")[0], (r["first"], full if full is not None else float(y.mean())),
                        rotation=90, fontsize=7, ha="center", va="bottom", color="tab:red")
    ax.set_xticks([r["first"] for r in table])
    ax.set_xlabel("K (last round fitted)")
    ax.set_ylabel("predicted solver limit U_s,∞")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(f"backtest: the limit predicted early — {title}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def backtest_html(table: list[dict]) -> str:
    rows = ["<table><tr><th>K</th><th>rounds fitted</th><th>U_s,∞ (0..K)</th><th>95% CI</th><th>U_s,∞ (all)</th>"
            "<th>error</th></tr>"]
    for r in table:
        if r["U_s_inf"] is None:
            rows.append(f"<tr><th>{r['first']}</th><td>{r['n_rounds']}</td><td colspan=4 style='text-align:left'>"
                        f"{html.escape(r['verdict'])}</td></tr>")
            continue
        rows.append(f"<tr><th>{r['first']}</th><td>{r['n_rounds']}</td><td>{_fmt(r['U_s_inf'])}</td>"
                    f"<td>[{_fmt(r['ci'][0])}, {_fmt(r['ci'][1])}]</td><td>{_fmt(r['U_s_inf_all'])}</td>"
                    f"<td>{_fmt(r['error'], '+.4g')}</td></tr>")
    return "".join(rows) + "</table>"


def _fmt(x, spec: str = ".4g") -> str:
    """Numbers for titles and tables; None (R² of a constant series, an undefined rounds-to-eps) prints as '–'."""
    return "–" if x is None else (format(x, spec) if isinstance(x, float) else html.escape(str(x)))


def _html(title: str, res, why: str, figures: list[Path], series: dict, quantity: str, joint=None,
          backtest: list | None = None) -> str:
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
            parts.append(f"<tr><th>{k}</th><td>{_fmt(getattr(res, k))}</td><td>[{_fmt(lo)}, {_fmt(hi)}]</td></tr>")
        te = res.rounds_to_eps
        parts.append(f"<tr><th>rounds to ε={te['eps']:g}</th><td>{_fmt(te['rounds'])}</td>"
                     f"<td>[{_fmt(res.ci.get('rounds_to_eps', [None])[0])}, "
                     f"{_fmt(res.ci.get('rounds_to_eps', [None, None])[1])}]</td></tr>")
        for k, v in res.r2.items():
            parts.append(f"<tr><th>R² {k}</th><td>{_fmt(v)}</td><td></td></tr>")
        parts.append(f"<tr><th>rounds fitted</th><td>{res.n_rounds}</td><td></td></tr></table>")
        parts.append(f"<details><summary>fit JSON</summary><pre>{html.escape(json.dumps(res.to_json(), indent=2))}"
                     f"</pre></details>")
    else:
        parts.append(f"<h2>No fit</h2><p>{html.escape(why)}</p>")
    if res is not None and res.decaying:
        parts.append("<p>sensitivity = ∂U_s,∞/∂G_0 at fixed U_v(0) = −β/(α−β) (docs/theory.md §2): how much a "
                     "larger initial gap lowers the solver's limit.</p>")
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
        parts.append(f"<tr><th>{s}</th>" + "".join(f"<td>{_fmt(series[m].get(s))}</td>" for m in names) + "</tr>")
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
    joint = _joint(series, quantity) if _external_rounds(series) and cs in series and cv in series else None
    if cs in series and cv in series:
        figures.append(out / "uncertainty.png")
        _plot_uncertainty(series, res, quantity, title, figures[-1], joint)
    if _plot_accuracy(series, title, out / "accuracy.png"):
        figures.append(out / "accuracy.png")
    table = _backtest(series, quantity, eps, n_boot)
    if table and plot_backtest(table, out / "backtest.png", title):
        figures.append(out / "backtest.png")
    page = out / "report.html"
    page.write_text(_html(title, res, why, figures, series, quantity, joint, table), encoding="utf-8")
    return ReportFiles(page, figures, res, table)


def build_report(run_id: str, out_dir: str | Path | None = None, *, uri: str | None = None,
                 quantity: str = "total", eps: float = 0.05, n_boot: int = 200, log: bool = True) -> ReportFiles:
    """Read run `run_id` from MLflow, render the report into out_dir (default runs/<run_id>/report) and, with
    `log`, attach the files to the run as artifacts under report/."""
    from orchestrator import tracking

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
        for path in [*files.figures, files.html]:  # only what this report wrote, not the rest of out_dir
            tracking.log_artifact(run_id, path, "report", uri)
    return files
