"""`svgap fit | plan | report` through orchestrator.cli.main, on CSV files and a real sqlite MLflow store."""
import json
import re
import time
from pathlib import Path

import numpy as np
import pytest

from orchestrator.cli import main
from orchestrator.theory.allocation import plan, simulate, strategy_shares
from orchestrator.theory.model import GapModel
from stores import sqlite_uri

TRUE = GapModel(rate=0.4, alpha_prime=3.0, beta_prime=1.0, U_s_inf=5.0, U_v_inf=4.2)
FIT_KEYS = {"rate", "alpha_prime", "beta_prime", "delta", "U_s_inf", "U_v_inf", "G_inf", "alpha_over_beta", "r2",
            "rounds_to_eps", "ci", "n_rounds", "fitted_on", "verdict", "sensitivity", "bootstrap"}


def _log(client, run_id: str, rows: dict[int, dict[str, float]]) -> None:
    from mlflow.entities import Metric

    ts = int(time.time() * 1000)
    client.log_batch(run_id, metrics=[Metric(k, float(v), ts, t) for t, row in rows.items() for k, v in row.items()])


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A sqlite MLflow store with: a decaying run, a run with external data, a 3-round run, an empty run."""
    from mlflow.tracking import MlflowClient

    root = tmp_path_factory.mktemp("mlflow")
    uri = sqlite_uri(f"{root}/mlflow.db")
    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("theory", artifact_location=str(root / "artifacts"))
    rng = np.random.default_rng(0)
    runs = {}

    run = client.create_run(exp, run_name="decay").info.run_id
    rows = {}
    for t in range(10):
        s, v, _ = TRUE.predict(t)
        s, v = s + rng.normal(0, 0.02), v + rng.normal(0, 0.02)
        acc = 0.3 + 0.4 * (1 - np.exp(-0.4 * t))
        rows[t] = {"U_s": s, "U_v": v, "G": s - v, "U_s_per_token": s / 10, "U_v_per_token": v / 10,
                   "len_s": 10, "len_v": 10, "acc_s": acc, "acc_v": acc + 0.1, "pass_at_n": acc + 0.2,
                   "heldout_acc": acc - 0.02}
    _log(client, run, rows)
    runs["decay"] = run

    run = client.create_run(exp, run_name="external").info.run_id
    eta = {t: 0.0 for t in range(12)}
    for i, e in enumerate(strategy_shares("uniform", 6)):
        eta[4 + i] = e
    out = simulate(TRUE, 0.5, [eta[t] for t in range(11)])
    _log(client, run, {t: {"U_s": out.U_s_path[t], "U_v": out.U_v_path[t], "external/eta": eta[t],
                           "external/count": 100 * eta[t]} for t in range(12)})
    runs["external"] = run

    run = client.create_run(exp, run_name="short").info.run_id
    _log(client, run, {t: {"U_s": TRUE.U_s(t), "U_v": TRUE.U_v(t)} for t in range(3)})
    runs["short"] = run
    run = client.create_run(exp, run_name="flat_v").info.run_id  # U_v constant: R² of U_v is undefined
    _log(client, run, {t: {"U_s": TRUE.U_s(t), "U_v": 4.0} for t in range(8)})
    runs["flat_v"] = run
    runs["empty"] = client.create_run(exp, run_name="empty").info.run_id
    return uri, runs, client


def _csv(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


def good_csv(tmp_path: Path, rounds: int = 10) -> str:
    lines = ["round,U_s,U_v,acc_s"]
    for t in range(rounds):
        s, v, _ = TRUE.predict(t)
        lines.append(f"{t},{s!r},{v!r},0.5")
    return _csv(tmp_path / "run.csv", "\n".join(lines) + "\n")


def cli(capsys, *argv):
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def error_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.startswith("svgap: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# --- fit -------------------------------------------------------------------------------------------------------
def test_fit_csv_json_keys(tmp_path, capsys):
    rc, out, _ = cli(capsys, "fit", "--csv", good_csv(tmp_path), "--json")
    assert rc == 0
    j = json.loads(out)
    assert set(j) == FIT_KEYS
    assert j["rate"] == pytest.approx(0.4, rel=1e-5) and j["r2"]["U_s"] > 0.99
    assert j["fitted_on"]["quantity"] == "total"


def test_fit_csv_first_gives_backtest_and_table(tmp_path, capsys):
    rc, out, _ = cli(capsys, "fit", "--csv", good_csv(tmp_path), "--first", "5", "--eps", "0.1", "--json")
    j = json.loads(out)
    assert rc == 0 and set(j) == FIT_KEYS | {"backtest"}
    assert set(j["backtest"]) == {"U_s_inf_error", "max_abs_error_U_s", "table"}
    assert [r["first"] for r in j["backtest"]["table"]] == list(range(4, 10))  # every K from 4 to the last round
    assert j["n_rounds"] == 6 and j["rounds_to_eps"]["eps"] == 0.1
    lo, hi = j["ci"]["sensitivity"]
    assert j["sensitivity"] == pytest.approx(-0.5, rel=1e-3) and lo <= j["sensitivity"] <= hi  # -beta/(alpha-beta)
    png = tmp_path / "bt.png"
    rc, out, _ = cli(capsys, "fit", "--csv", good_csv(tmp_path), "--first", "5", "--plot", str(png))
    assert rc == 0 and "U_s,inf (limit)" in out and "backtest" in out and "decaying" in out
    assert re.search(r"^\s+4\s+5\s+\d", out, re.M) and re.search(r"^\s+9\s+10\s+\d", out, re.M)  # K rows
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_fit_run_total_and_per_token(store, capsys):
    uri, runs, _ = store
    rc, out, _ = cli(capsys, "fit", "--run", runs["decay"], "--tracking-uri", uri, "--json")
    j = json.loads(out)
    assert rc == 0 and set(j) == FIT_KEYS
    assert j["U_s_inf"] == pytest.approx(5.0, rel=0.02) and j["n_rounds"] == 10
    rc, out, _ = cli(capsys, "fit", "--run", runs["decay"], "--tracking-uri", uri, "--quantity", "per_token",
                     "--json")
    j = json.loads(out)
    assert rc == 0 and j["fitted_on"]["quantity"] == "per_token"
    assert j["U_s_inf"] == pytest.approx(0.5, rel=0.02)


# --- plan ------------------------------------------------------------------------------------------------------
def test_plan_from_fit_json(tmp_path, capsys):
    rc, out, _ = cli(capsys, "fit", "--csv", good_csv(tmp_path), "--json")
    fit_file = tmp_path / "fit.json"
    fit_file.write_text(out)
    rc, out, _ = cli(capsys, "plan", "--fit", fit_file, "--gamma", "0.05", "--rounds", "9", "--json")
    assert rc == 0
    j = json.loads(out)
    assert set(j) >= {"strategies", "best", "objective"}
    assert set(j["strategies"]) == {"early", "uniform", "late"}
    for o in j["strategies"].values():  # point prediction and its 95% interval from the fit's bootstrap
        assert set(o) == {"eta", "U_s_T", "U_s_inf", "J", "ci", "impossible_share", "vs_best"}
        assert o["ci"]["U_s_inf"][0] - 1e-6 <= o["U_s_inf"] <= o["ci"]["U_s_inf"][1] + 1e-6
    lims = [o["U_s_inf"] for o in j["strategies"].values()]
    assert max(lims) - min(lims) < 0.25 * (j["baseline"]["U_s_inf"] - max(lims))
    assert j["best"] == "early" and j["objective"] == "limit"
    c = j["comparison"]  # is the best distinguishable from the runner-up under the fit?
    assert c["best"] == "early" and c["runner_up"] == "uniform" and isinstance(c["distinguishable"], bool)
    assert c["distinguishable"] == (not c["intervals_overlap"])
    ci = {k: j["strategies"][k]["ci"]["U_s_inf"] for k in ("early", "uniform")}
    assert c["intervals_overlap"] == (ci["early"][1] >= ci["uniform"][0])
    assert j["chosen"] == ("early" if c["distinguishable"] else "uniform") and j["why"]
    # every ranked strategy keeps whether its place is significant: its interval against the best's
    best_hi = j["strategies"]["early"]["ci"]["U_s_inf"][1]
    assert j["strategies"]["early"]["vs_best"] == "best"
    for k in ("uniform", "late"):
        o = j["strategies"][k]
        assert o["vs_best"] == ("shown worse" if o["ci"]["U_s_inf"][0] > best_hi else "not shown worse")
    assert j["strategies"]["uniform"]["vs_best"] == ("shown worse" if c["distinguishable"] else "not shown worse")
    assert "gamma given, not fitted here" in j["gamma_note"]
    rc, out, _ = cli(capsys, "plan", "--fit", fit_file, "--gamma", "0.05", "--rounds", "3", "--strategies",
                     "uniform", "--shares", "0.2,0.3,0.5", "--objective", "horizon")
    assert rc == 0 and "explicit" in out and "uniform" in out and "no external" in out


def test_plan_from_run_with_and_without_gamma(store, capsys):
    uri, runs, _ = store
    rc, out, _ = cli(capsys, "plan", "--run", runs["decay"], "--tracking-uri", uri, "--gamma", "0.1",
                     "--rounds", "6", "--json")
    assert rc == 0 and json.loads(out)["best"] == "early"
    rc, out, _ = cli(capsys, "plan", "--run", runs["external"], "--tracking-uri", uri, "--rounds", "6", "--json")
    assert rc == 0
    got = json.loads(out)
    assert got["gamma"] == pytest.approx(0.5, rel=0.05)  # fitted from external/eta
    # the plan uses the jointly fitted model, not a fit that reads the external jumps as self-improvement
    truth = plan(TRUE, 0.5, 6)
    for name, o in truth.outcomes.items():
        assert got["strategies"][name]["U_s_inf"] == pytest.approx(o.U_s_inf, abs=0.05), name
    # with gamma given, the model still comes from the joint fit
    rc, out, _ = cli(capsys, "plan", "--run", runs["external"], "--tracking-uri", uri, "--rounds", "6", "--gamma",
                     "0.5", "--json")
    assert rc == 0 and json.loads(out)["strategies"]["late"]["U_s_inf"] == pytest.approx(
        truth.outcomes["late"].U_s_inf, abs=0.05)


def test_plan_says_gamma_is_from_one_shape_widens_and_refuses_another_budget(store, capsys):
    """gamma fitted from one run is fitted along that run's one allocation shape: the plan says so and widens every
    interval x2; reused at another budget than the run's it is refused (exit 2, one line)."""
    uri, runs, client = store
    client.log_param(runs["external"], "external.budget", "100")
    args = ["plan", "--run", runs["external"], "--tracking-uri", uri, "--rounds", "6", "--json"]
    rc, out, _ = cli(capsys, *args)
    wide = json.loads(out)
    assert rc == 0 and "single allocation shape" in wide["gamma_note"] and "widened x2" in wide["gamma_note"]
    rc, out, _ = cli(capsys, *args, "--gamma", str(wide["gamma"]))  # gamma given: said, not widened
    given = json.loads(out)
    assert "gamma given" in given["gamma_note"]
    rc, out, _ = cli(capsys, *args, "--budget", "100")
    assert rc == 0 and json.loads(out)["gamma_note"] == wide["gamma_note"]
    rc, _, err = cli(capsys, *args, "--budget", "400")
    lines = [ln for ln in err.splitlines() if ln.startswith("svgap: error:")]
    assert rc == 2 and len(lines) == 1 and "budget of 100 examples" in lines[0] and "400" in lines[0]


# --- report ----------------------------------------------------------------------------------------------------
def test_report_writes_pngs_html_and_logs_artifacts(store, tmp_path, capsys):
    uri, runs, client = store
    out_dir = tmp_path / "rep"
    out_dir.mkdir()
    (out_dir / "notes.txt").write_text("the user's own file: not part of the report")
    rc, out, _ = cli(capsys, "report", runs["decay"], "--out", out_dir, "--tracking-uri", uri)
    assert rc == 0
    for name in ("uncertainty.png", "accuracy.png", "report.html"):
        assert (out_dir / name).stat().st_size > 1000, name
    assert (out_dir / "uncertainty.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = (out_dir / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 3 and "U_s_inf" in page and "src='http" not in page
    assert "Backtest" in page and "sensitivity" in page
    logged = {Path(a.path).name for a in client.list_artifacts(runs["decay"], "report")}
    assert logged == {"uncertainty.png", "accuracy.png", "backtest.png", "report.html", "accuracy_link.json"}


def test_report_of_an_external_data_run_shows_the_joint_fit(store, tmp_path, capsys):
    uri, runs, _ = store
    rc, _, _ = cli(capsys, "report", runs["external"], "--out", tmp_path, "--tracking-uri", uri, "--no-log")
    assert rc == 0
    page = (tmp_path / "report.html").read_text()
    gamma = float(re.search(r"gamma = ([0-9.]+)", page).group(1))
    limit = float(re.search(r"limit is U_s,inf = ([0-9.]+)", page).group(1))
    eta = [0.0] * 4 + strategy_shares("uniform", 6) + [0.0]
    assert gamma == pytest.approx(0.5, rel=0.02)
    assert limit == pytest.approx(simulate(TRUE, 0.5, eta).U_s_inf, abs=0.01)
    assert (tmp_path / "uncertainty.png").stat().st_size > 1000


def test_report_with_undefined_r2_still_plots(store, tmp_path, capsys):
    uri, runs, _ = store
    rc, out, _ = cli(capsys, "report", runs["flat_v"], "--out", tmp_path, "--tracking-uri", uri, "--no-log")
    assert rc == 0 and "fit: decaying" in out
    assert (tmp_path / "uncertainty.png").stat().st_size > 1000


def test_report_bad_eps(store, tmp_path, capsys):
    uri, runs, _ = store
    rc, _, err = cli(capsys, "report", runs["decay"], "--out", tmp_path, "--tracking-uri", uri, "--eps", "0")
    assert rc == 2 and "--eps must be a positive number, got 0.0" in error_line(err)
    assert not any(tmp_path.iterdir())  # nothing written


def test_report_short_run_says_why_there_is_no_fit(store, tmp_path, capsys):
    uri, runs, _ = store
    rc, out, _ = cli(capsys, "report", runs["short"], "--out", tmp_path, "--tracking-uri", uri, "--no-log")
    assert rc == 0
    page = (tmp_path / "report.html").read_text()
    assert "No fit" in page and "need at least 4 rounds" in page


# --- bad input: one line, exit 2 -------------------------------------------------------------------------------
@pytest.mark.parametrize("text, msg", [
    ("round,U_s\n0,1\n1,2\n2,3\n3,4\n", "missing column(s) U_v (has: round, U_s)"),
    ("round,U_s,U_v\n0,3,2\n1,abc,1\n2,1,0.5\n3,0.5,0.2\n", "line 3: column U_s: 'abc' is not a number"),
    ("round,U_s,U_v\n0,3,2\n1,2,\n2,1,0.5\n3,0.5,0.2\n", "line 3: column U_v: '' is not a number"),
    ("round,U_s,U_v\n0,3,2\n1,nan,1\n2,1,0.5\n3,0.5,0.2\n", "line 3: column U_s is not finite (nan)"),
    ("round,U_s,U_v\n0,3,2\n1,2,1\n2,1,inf\n3,0.5,0.2\n", "line 4: column U_v is not finite (inf)"),
    ("round,U_s,U_v\n0,3,2\n1,2,1\n1,1,0.5\n3,0.5,0.2\n", "duplicate round 1"),
    ("round,U_s,U_v\n0,3,2\n2,2,1\n1,1,0.5\n3,0.5,0.2\n", "rounds are not sorted: round 1 comes after round 2"),
    ("round,U_s,U_v\n0,3,2\n1,2,1\n2,1,0.5\n", "need at least 4 rounds"),
    ("", "missing column(s) round, U_s, U_v"),
])
def test_fit_bad_csv(tmp_path, capsys, text, msg):
    path = _csv(tmp_path / "bad.csv", text)
    rc, out, err = cli(capsys, "fit", "--csv", path)
    assert rc == 2 and out == ""
    assert msg in error_line(err)


def test_fit_missing_csv_file(tmp_path, capsys):
    rc, _, err = cli(capsys, "fit", "--csv", tmp_path / "nope.csv")
    assert rc == 2 and f"CSV file not found: {tmp_path / 'nope.csv'}" in error_line(err)


@pytest.mark.parametrize("command", [["fit", "--run"], ["report"], ["plan", "--gamma", "0.1", "--rounds", "3",
                                                                    "--run"]])
def test_unknown_run_id(store, capsys, command):
    uri, _, _ = store
    rc, _, err = cli(capsys, *command, "0123456789abcdef0123456789abcdef", "--tracking-uri", uri)
    assert rc == 2 and "unknown MLflow run id '0123456789abcdef0123456789abcdef'" in error_line(err)


def test_run_without_the_metrics(store, capsys):
    uri, runs, _ = store
    rc, _, err = cli(capsys, "fit", "--run", runs["empty"], "--tracking-uri", uri)
    assert rc == 2 and "logged no U_s, U_v metric" in error_line(err)
    rc, _, err = cli(capsys, "report", runs["empty"], "--tracking-uri", uri)
    assert rc == 2 and "logged none of the round metrics" in error_line(err)
    rc, _, err = cli(capsys, "plan", "--run", runs["decay"], "--tracking-uri", uri, "--rounds", "3")
    assert rc == 2 and "--gamma is required" in error_line(err)


@pytest.mark.parametrize("extra, msg", [
    (["--gamma", "0"], "--gamma must be > 0, got 0"),
    (["--gamma", "-1"], "--gamma must be > 0, got -1"),
    (["--gamma", "0.1", "--shares", "0.5,0.4,0.0"], "--shares: shares must sum to 1, they sum to 0.9"),
    (["--gamma", "0.1", "--shares", "0.5,0.5"], "--shares: has 2 entries, expected one per round (3)"),
    (["--gamma", "0.1", "--shares", "0.5,x,0.5"], "--shares: '0.5,x,0.5' is not a comma-separated list"),
    (["--gamma", "0.1", "--strategies", "early,soon"], "unknown strategy 'soon'"),
    (["--gamma", "0.1", "--rounds", "0"], "--rounds must be >= 1"),
])
def test_plan_bad_input(tmp_path, capsys, extra, msg):
    rc, out, _ = cli(capsys, "fit", "--csv", good_csv(tmp_path), "--json", "--n-boot", "0")
    fit_file = tmp_path / "fit.json"
    fit_file.write_text(out)
    args = ["plan", "--fit", fit_file, "--rounds", "3", *extra]
    rc, _, err = cli(capsys, *args)
    assert rc == 2 and msg in error_line(err)


def test_plan_bad_fit_file(tmp_path, capsys):
    rc, _, err = cli(capsys, "plan", "--fit", tmp_path / "none.json", "--gamma", "0.1", "--rounds", "3")
    assert rc == 2 and "fit file not found" in error_line(err)
    bad = _csv(tmp_path / "bad.json", "{not json")
    rc, _, err = cli(capsys, "plan", "--fit", bad, "--gamma", "0.1", "--rounds", "3")
    assert rc == 2 and "is not valid JSON" in error_line(err)
    partial = _csv(tmp_path / "partial.json", json.dumps({"rate": 0.4}))
    rc, _, err = cli(capsys, "plan", "--fit", partial, "--gamma", "0.1", "--rounds", "3")
    assert rc == 2 and "lacks key(s) alpha_prime" in error_line(err)


def test_plan_on_data_without_decay(tmp_path, capsys):
    path = _csv(tmp_path / "flat.csv", "round,U_s,U_v\n" + "".join(f"{t},5,4\n" for t in range(6)))
    rc, out, _ = cli(capsys, "fit", "--csv", path, "--json")
    assert rc == 0 and json.loads(out)["verdict"].startswith("no decay")
    rc, out, _ = cli(capsys, "plan", "--csv", path, "--gamma", "0.1", "--rounds", "3")
    assert rc == 0 and "no decay: no allocation can be predicted" in out and "<- best" not in out
