"""`svgap fit --stop-below EPS`: the stop object of issue 22, the same decision the run's stop rule takes
(orchestrator/theory/decision.py) on the same rounds."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from orchestrator.cli import main
from orchestrator.theory.decision import decide_stop
from orchestrator.theory.model import GapModel


def _csv(tmp_path: Path, rate: float, rounds: int, noise: float = 0.01, seed: int = 0):
    m = GapModel(rate=rate, alpha_prime=2.0, beta_prime=0.8, U_s_inf=2.0, U_v_inf=1.5)
    t = np.arange(rounds)
    S, V, _ = m.predict(t)
    rng = np.random.default_rng(seed)
    S, V = S * (1 + noise * rng.standard_normal(rounds)), V * (1 + noise * rng.standard_normal(rounds))
    path = tmp_path / "run.csv"
    path.write_text("round,U_s,U_v\n" + "".join(f"{a},{float(b)!r},{float(c)!r}\n" for a, b, c in zip(t, S, V)))
    return str(path), t, S, V


def _cli(capsys, *argv):
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def test_stop_object_equals_the_rule_on_the_same_rounds(tmp_path, capsys):
    path, t, S, V = _csv(tmp_path, 0.7, 10)
    rc, out, _ = _cli(capsys, "fit", "--csv", path, "--stop-below", 0.1, "--json", "--n-boot", 20)
    assert rc == 0
    stop = json.loads(out)["stop"]
    assert stop == json.loads(json.dumps(decide_stop(t, S, V, threshold=0.1).to_json()))
    assert stop["decision"] == "stop" and stop["gain_upper"] < 0.1 and stop["threshold"] == 0.1


def test_stop_with_first_decides_on_the_early_rounds(tmp_path, capsys):
    path, t, S, V = _csv(tmp_path, 0.2, 10)
    rc, out, _ = _cli(capsys, "fit", "--csv", path, "--stop-below", 0.1, "--first", 5, "--json", "--n-boot", 20)
    stop = json.loads(out)["stop"]
    assert rc == 0 and stop["rounds"] == list(range(6))
    assert stop["decision"] == decide_stop(t[:6], S[:6], V[:6], threshold=0.1).decision == "continue"


def test_stop_text_line_and_bad_threshold(tmp_path, capsys):
    path, *_ = _csv(tmp_path, 0.7, 10)
    rc, out, _ = _cli(capsys, "fit", "--csv", path, "--stop-below", 0.1, "--n-boot", 20)
    assert rc == 0 and "stop rule (gain below 0.1): stop: predicted remaining gain" in out
    rc, _, err = _cli(capsys, "fit", "--csv", path, "--stop-below", -1)
    lines = [ln for ln in err.splitlines() if ln.startswith("svgap: error:")]
    assert rc == 2 and len(lines) == 1 and "--stop-below" in lines[0] and "Traceback" not in err
