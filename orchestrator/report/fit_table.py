"""One table of fit quality over many runs (issue 22 item 6): for every run of a store, an experiment or a sweep,
the gap fit's R² of U_s, U_v and G, the accuracy link's R² (theory/accuracy_link.py: held-out accuracy against U_s),
the rate and the limits -- or the verdict where there is no fit. `svgap report --table` prints it; with a sweep it is
attached to the sweep's parent run (report/fit_table.json, .md).
"""
from __future__ import annotations

import json
from pathlib import Path

from orchestrator.errors import SvgapError
from orchestrator.report.plots import UNCERTAINTY

COLUMNS = [("run", "run"), ("rounds", "rounds"), ("R² U_s", "r2_U_s"), ("R² U_v", "r2_U_v"), ("R² G", "r2_G"),
           ("R² acc", "r2_accuracy"), ("rate", "rate"), ("U_s,inf", "U_s_inf"), ("U_v,inf", "U_v_inf"),
           ("verdict", "verdict")]


def run_row(run_id: str, name: str, series: dict, quantity: str = "total") -> dict:
    """One run's row from its metric series ({name: {step: value}})."""
    from orchestrator.theory.accuracy_link import fit_accuracy_link
    from orchestrator.theory.fit import fit_gap

    cs, cv = UNCERTAINTY[quantity]
    steps = sorted(set(series.get(cs, {})) & set(series.get(cv, {})))
    row = {"run": name, "run_id": run_id, "rounds": len(steps), "r2_U_s": None, "r2_U_v": None, "r2_G": None,
           "rate": None, "U_s_inf": None, "U_v_inf": None, "verdict": None, "r2_accuracy": None}
    if not steps:
        row["verdict"] = f"no {cs}/{cv} logged"
        return row
    S, V = [series[cs][t] for t in steps], [series[cv][t] for t in steps]
    try:
        f = fit_gap(steps, S, V, n_boot=0, backtest=False, quantity=quantity)
        row.update(verdict=f.verdict, r2_U_s=f.r2.get("U_s"), r2_U_v=f.r2.get("U_v"), r2_G=f.r2.get("G"))
        if f.decaying:
            row.update(rate=f.rate, U_s_inf=f.U_s_inf, U_v_inf=f.U_v_inf)
    except SvgapError as e:
        row["verdict"] = f"no fit: {e}"
    acc = series.get("heldout_acc", {})
    both = [t for t in steps if t in acc]
    link = fit_accuracy_link([series[cs][t] for t in both], [acc[t] for t in both])
    row["r2_accuracy"], row["accuracy_link"] = link.r2, link.to_json()
    return row


def _cell(v) -> str:
    if v is None:
        return "–"
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def to_markdown(rows: list[dict]) -> str:
    head = "| " + " | ".join(c for c, _ in COLUMNS) + " |"
    out = [head, "|" + "---|" * len(COLUMNS)]
    out += ["| " + " | ".join(_cell(r.get(k)) for _, k in COLUMNS) + " |" for r in rows]
    return "\n".join(out)


def store_table(runs: list, uri: str | None, quantity: str = "total") -> list[dict]:
    """Rows of the given MLflow runs (newest first, as listed)."""
    from orchestrator.report.html import METRICS
    from orchestrator.store import tracking

    rows = []
    for r in runs:
        series = tracking.metric_series(r.info.run_id, METRICS, uri)
        if not set(UNCERTAINTY[quantity]) & set(series):  # a sweep's parent run, or one that never measured
            continue
        rows.append(run_row(r.info.run_id, r.info.run_name or r.info.run_id[:8], series, quantity))
    return rows


def write(rows: list[dict], out: Path) -> list[Path]:
    """fit_table.json and fit_table.md into out."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / "fit_table.json").write_text(json.dumps(rows, indent=1))
        (out / "fit_table.md").write_text(to_markdown(rows) + "\n")
    except OSError as e:
        raise SvgapError(f"cannot write the fit table into {out}: {e}") from None
    return [out / "fit_table.json", out / "fit_table.md"]
