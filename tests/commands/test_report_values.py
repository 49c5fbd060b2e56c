"""Tests that hold the line they claim (issue 15 item 5): the report's HTML shows the right numbers -- the fit
table's rate and U_s,∞ and the per-round table -- and the allocation table's numbers are those of its child runs."""
from __future__ import annotations

import json
import re
from html.parser import HTMLParser

import numpy as np
import pytest

from orchestrator.store import tracking
from orchestrator.cli import main
from orchestrator.theory.fit import fit_gap
from orchestrator.theory.model import GapModel

TRUE = GapModel(rate=0.35, alpha_prime=2.5, beta_prime=0.8, U_s_inf=3.0, U_v_inf=2.4)


class Tables(HTMLParser):
    """Every <table> of a page as rows of cell texts (th and td alike)."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[list[list[str]]] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append([])
        elif tag == "tr" and self.tables:
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def _logged_run(uri: str) -> tuple[str, dict[int, dict[str, float]]]:
    """A run in a real sqlite store that logged TRUE's dynamics with noise, as `svgap run` would."""
    from orchestrator.store.mirror import RunLogger

    rng = np.random.default_rng(3)
    rows = {}
    for t in range(9):
        s, v, _ = TRUE.predict(t)
        s, v = s + rng.normal(0, 0.01), v + rng.normal(0, 0.01)
        acc = 0.35 + 0.3 * (1 - np.exp(-0.35 * t))
        rows[t] = {"U_s": s, "U_v": v, "G": s - v, "acc_s": acc, "acc_v": acc + 0.1, "heldout_acc": acc - 0.01}
    log = RunLogger(uri, "report-values", "decay", {"rounds": 8})
    for t, row in rows.items():
        log.log_metrics(row, step=t)
    log.end()
    return log.run_id, rows


def test_report_html_shows_the_fit_and_every_logged_value(tmp_path, tracking_uri):
    """What `svgap report` builds (few bootstrap replicates: the point estimates shown do not depend on them)."""
    from orchestrator.report.html import build_report

    uri = tracking_uri
    run_id, rows = _logged_run(uri)
    build_report(run_id, tmp_path / "rep", uri=uri, n_boot=20, log=False)
    page = Tables()
    page.feed((tmp_path / "rep" / "report.html").read_text(encoding="utf-8"))

    # the fit table: the values of the fit of these rounds (the same numbers `svgap fit` gives), near the truth
    fit_rows = next(t for t in page.tables if t and t[0][:2] == ["quantity", "value"])
    shown = {r[0]: r[1] for r in fit_rows[1:]}
    t_ = sorted(rows)
    ref = fit_gap(t_, [rows[t]["U_s"] for t in t_], [rows[t]["U_v"] for t in t_], n_boot=0)
    assert ref.decaying
    for k in ("rate", "U_s_inf", "U_v_inf", "G_inf"):
        assert float(shown[k]) == pytest.approx(getattr(ref, k), rel=5e-4), k  # printed with 4 significant digits
    assert float(shown["rate"]) == pytest.approx(TRUE.rate, abs=0.05)
    assert float(shown["U_s_inf"]) == pytest.approx(TRUE.U_s_inf, abs=0.1)
    assert shown["rounds fitted"] == "9"

    # the per-round table: one row per round, each cell the logged value
    per_round = page.tables[-1]
    header = per_round[0]
    assert header[0] == "round" and {"U_s", "U_v", "G", "acc_s", "acc_v", "heldout_acc"} <= set(header)
    assert [r[0] for r in per_round[1:]] == [str(t) for t in range(9)]
    for r in per_round[1:]:
        t = int(r[0])
        for name, cell in zip(header[1:], r[1:]):
            assert float(cell) == pytest.approx(rows[t][name], rel=5e-4, abs=1e-12), (t, name)


@pytest.mark.slow
def test_allocation_table_numbers_are_those_of_its_child_runs(local_ray, base_model_dir, tmp_path, tracking_uri,
                                                              capsys):
    """A real tiny study (none and uniform, one seed): every number of the table that comes from a run -- initial
    and final held-out accuracy, the gain over none, the run ids -- read back from the child runs in MLflow."""
    uri = tracking_uri
    argv = ["allocate", "--budget", "8", "--strategies", "none,uniform", "--seeds", "1", "--tracking-uri", uri,
            "--experiment", "alloc-values"]
    for kv in ("workload.train_prompts=16", "workload.heldout_prompts=16", "generation.n=2", "rounds=1",
               "training.epochs=1", f"model.path={base_model_dir}", f"tracking.out_dir={tmp_path / 'runs'}"):
        argv += ["--set", kv]
    assert main(argv) == 0
    out = capsys.readouterr().out
    parent = re.search(r"MLflow parent run id: (\w+)", out).group(1)
    table = json.loads(tracking.artifact_text(parent, "allocation_table.json", uri))
    children = {c.info.run_id: c for c in tracking.child_runs(parent, uri)}
    assert sorted(r["run_id"] for r in table["runs"]) == sorted(children)
    by_strategy = {}
    for r in table["runs"]:
        assert children[r["run_id"]].data.tags["mlflow.runName"] == f"{r['strategy']} seed {r['seed']}"
        by_strategy[r["strategy"]] = tracking.run_metrics(r["run_id"], uri)
    rows = {r["strategy"]: r for r in table["rows"]}
    for s, m in by_strategy.items():
        acc = m["heldout_acc"]
        assert rows[s]["initial_acc"] == pytest.approx(acc[0]) and rows[s]["final_acc"] == pytest.approx(acc[1])
    gain = by_strategy["uniform"]["heldout_acc"][1] - by_strategy["none"]["heldout_acc"][1]
    assert rows["uniform"]["gain_over_none"] == pytest.approx(gain)
    assert sum(by_strategy["uniform"]["external/count"].values()) == 8
    parent_metrics = tracking.run_metrics(parent, uri)
    for s in ("none", "uniform"):
        assert parent_metrics[f"final_acc/{s}"][0] == pytest.approx(rows[s]["final_acc"])
    md = tracking.artifact_text(parent, "allocation_table.md", uri)
    assert "| uniform |" in md and f"{rows['uniform']['final_acc']:.3f}" in md
