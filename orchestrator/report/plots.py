"""The figures of a run's report (orchestrator/report/html.py): the measured uncertainties with the fitted gap dynamics,
the accuracies per round, and the backtest. Each writes one PNG; the rounds with external data are shaded."""
from __future__ import annotations

import html
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

UNCERTAINTY = {"total": ("U_s", "U_v"), "per_token": ("U_s_per_token", "U_v_per_token")}
ACCURACY = {"acc_s": "solver (sampled candidate)", "acc_v": "verifier (BoN pick)", "pass_at_n": "pass@N",
            "heldout_acc": "held-out"}
COLORS = {"U_s": "tab:blue", "U_v": "tab:orange", "G": "tab:green"}


def fmt(x, spec: str = ".4g") -> str:
    """Numbers for titles and tables; None (R² of a constant series, an undefined rounds-to-eps) prints as '–'."""
    return "–" if x is None else (format(x, spec) if isinstance(x, float) else html.escape(str(x)))


def external_rounds(series: dict) -> list[int]:
    return [t for t, e in sorted(series.get("external/eta", {}).items()) if e > 0]


def _shade_external(ax, rounds: list[int], label: bool) -> None:
    for i, t in enumerate(rounds):
        ax.axvspan(t - 0.4, t + 0.4, color="0.85", zorder=0, label="external data (η>0)" if label and i == 0 else None)


def plot_uncertainty(series: dict, res, quantity: str, title: str, path: Path, joint=None) -> None:
    cs, cv = UNCERTAINTY[quantity]
    steps = sorted(set(series.get(cs, {})) & set(series.get(cv, {})))
    t = np.asarray(steps, float)
    S = np.asarray([series[cs][s] for s in steps])
    V = np.asarray([series[cv][s] for s in steps])
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 5), dpi=110)
    ext = external_rounds(series)
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
        ax1.set_title(f"solver & verifier uncertainty: rate r = {res.rate:.3g}, R² U_s {fmt(res.r2['U_s'], '.3f')}, "
                      f"U_v {fmt(res.r2['U_v'], '.3f')}", fontsize=10)
        ax2.set_title(f"gap: G_∞ = {res.G_inf:.3g}, R² {fmt(res.r2['G'], '.3f')}; within ε={res.rounds_to_eps['eps']:g} "
                      f"after t > {fmt(res.rounds_to_eps['rounds'], '.1f')}", fontsize=10)
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


def plot_accuracy(series: dict, title: str, path: Path) -> bool:
    present = [k for k in ACCURACY if k in series]
    if not present:
        return False
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=110)
    _shade_external(ax, external_rounds(series), True)
    for k in present:
        steps = sorted(series[k])
        ax.plot(steps, [series[k][s] for s in steps], "o-", label=f"{k}: {ACCURACY[k]}")
    ax.set_ylim(-0.02, 1.02)
    _finish(fig, ax, "round t", "accuracy", f"accuracy per round — {title}", path)
    return True


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
    _finish(fig, ax, "K (last round fitted)", "predicted solver limit U_s,∞",
            f"backtest: the limit predicted early — {title}", path)
    return True


def _finish(fig, ax, xlabel: str, ylabel: str, title: str, path: Path) -> None:
    """Labels, grid, legend and title of a one-panel figure; then it is written and closed."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
