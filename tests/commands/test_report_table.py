"""The accuracy link and the fit table (issue 22 item 6): `svgap report RUN_ID` fits held-out accuracy against U_s
and shows it (HTML, stdout, MLflow metrics + artifact); `svgap report --table` prints one row per run of a store,
an experiment or a sweep, with each run's R² (U_s, U_v, G, accuracy link), rate and limits -- real sqlite MLflow."""
from __future__ import annotations

import json

import numpy as np
import pytest

from orchestrator.cli import main
from orchestrator.store import tracking
from orchestrator.store.mirror import RunLogger
from orchestrator.theory.accuracy_link import fit_accuracy_link
from orchestrator.theory.fit import fit_gap
from orchestrator.theory.model import GapModel

TRUE = GapModel(rate=0.35, alpha_prime=2.5, beta_prime=0.8, U_s_inf=3.0, U_v_inf=2.4)


def log_run(uri: str, name: str, seed: int, parent: str | None = None, experiment: str = "links") -> tuple[str, dict]:
    rng = np.random.default_rng(seed)
    rows = {}
    for t in range(8):
        s, v, _ = (float(x) for x in TRUE.predict(t))
        s, v = s * (1 + 0.01 * rng.standard_normal()), v * (1 + 0.01 * rng.standard_normal())
        acc = 1 / (1 + np.exp(-(6.0 - 1.5 * s))) + 0.005 * rng.standard_normal()
        rows[t] = {"U_s": s, "U_v": v, "G": s - v, "heldout_acc": float(acc)}
    log = RunLogger(uri, experiment, name, {"rounds": 7}, parent_run_id=parent)
    for t, row in rows.items():
        log.log_metrics(row, step=t)
    log.end()
    return log.run_id, rows


def test_accuracy_link_fits_a_logistic_and_says_why_not():
    U = np.linspace(5.0, 3.0, 8)
    acc = 1 / (1 + np.exp(-(6.0 - 1.5 * U)))
    link = fit_accuracy_link(U, acc)
    assert link.r2 == pytest.approx(1.0, abs=1e-6) and link.b == pytest.approx(1.5, rel=1e-3)
    assert link.spearman == pytest.approx(-1.0) and link.predict([4.0])[0] == pytest.approx(1 / (1 + np.exp(0)))
    assert "too few rounds" in fit_accuracy_link([1, 2], [0.1, 0.2]).why
    assert "constant" in fit_accuracy_link([1, 2, 3], [0.5, 0.5, 0.5]).why
    assert "NaN" in fit_accuracy_link([1, float("nan"), 3], [0.1, 0.2, 0.3]).why
    assert fit_accuracy_link([1, 2, 3], [0.5, 0.5, 0.5]).r2 is None


def test_report_shows_and_logs_the_accuracy_link(tmp_path, tracking_uri, capsys):
    run_id, rows = log_run(tracking_uri, "one", 0)
    assert main(["report", run_id, "--out", str(tmp_path / "rep"), "--n-boot", "20",
                 "--tracking-uri", tracking_uri]) == 0
    out = capsys.readouterr().out
    ref = fit_accuracy_link([rows[t]["U_s"] for t in range(8)], [rows[t]["heldout_acc"] for t in range(8)])
    assert ref.r2 > 0.9 and f"R² {ref.r2:.3f}" in out and "accuracy link: held-out acc" in out
    page = (tmp_path / "rep" / "report.html").read_text(encoding="utf-8")
    assert "Accuracy and U_s" in page and f"{ref.r2:.4g}" in page
    logged = tracking.run_metrics(run_id, tracking_uri)
    assert logged["report/accuracy_r2"] == {7: pytest.approx(ref.r2)}
    assert "report/accuracy_link.json" in tracking.artifact_paths(run_id, uri=tracking_uri)
    saved = json.loads(tracking.artifact_text(run_id, "report/accuracy_link.json", tracking_uri))
    assert saved["b"] == pytest.approx(ref.b) and saved["n"] == 8


def test_fit_table_over_a_sweep_and_the_store(tmp_path, tracking_uri, capsys):
    parent = RunLogger(tracking_uri, "links", "sweep", {})
    kids = dict(log_run(tracking_uri, f"seed {s}", s, parent.run_id) for s in range(2))
    parent.end()
    log_run(tracking_uri, "elsewhere", 5, experiment="other")
    assert main(["report", "--table", "--sweep", parent.run_id, "--out", str(tmp_path / "t"),
                 "--tracking-uri", tracking_uri]) == 0
    out = capsys.readouterr().out
    assert "| run | rounds | R² U_s | R² U_v | R² G | R² acc | rate | U_s,inf |" in out
    table = json.loads(tracking.artifact_text(parent.run_id, "report/fit_table.json", tracking_uri))
    assert sorted(r["run_id"] for r in table) == sorted(kids)
    for r in table:
        rows = kids[r["run_id"]]
        ref = fit_gap(range(8), [rows[t]["U_s"] for t in range(8)], [rows[t]["U_v"] for t in range(8)], n_boot=0,
                      backtest=False)
        assert r["r2_U_s"] == pytest.approx(ref.r2["U_s"]) and r["rate"] == pytest.approx(ref.rate)
        assert r["r2_accuracy"] > 0.9 and f"| {r['run']} | 8 |" in out
    assert main(["report", "--table", "--tracking-uri", tracking_uri]) == 0  # the whole store: 3 runs, no parent
    out = capsys.readouterr().out
    assert out.count("| seed ") == 2 and "| elsewhere |" in out and "| sweep |" not in out
    assert main(["report", "--table", "--experiment", "nope", "--tracking-uri", tracking_uri]) == 2
    err = capsys.readouterr().err
    assert "no experiment 'nope'" in err and "Traceback" not in err
