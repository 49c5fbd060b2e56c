"""`svgap fit --run FOLDER --stop-below EPS --json` takes, round by round, exactly the decision the run's own stop
rule took (run/online_fit.py, kept in fits/round_XXX.json): the run folder is written here as the controller writes
it (records, fits, state with the external-data scheduler), from noisy rounds of known dynamics -- no Ray, no model.
The Ray end-to-end twin: tests/run/test_run_modes.py::test_stop_rule_ends_the_run_before_training_past_the_stop."""
from __future__ import annotations

import json

import numpy as np
import pytest

from orchestrator import config
from orchestrator.cli import main
from orchestrator.run.online_fit import OnlineFit
from orchestrator.run.scheduler import Scheduler
from orchestrator.store.records import RoundRecord
from orchestrator.store.run_store import RunFiles
from orchestrator.theory.model import GapModel

TRUE = GapModel(rate=0.5, alpha_prime=2.0, beta_prime=0.8, U_s_inf=2.0, U_v_inf=1.5)


def write_run(tmp_path, overrides: list[str], rounds: int, noise: float, seed: int):
    """Rounds 0..rounds through OnlineFit and the scheduler, kept like the controller: (folder, {t: fit}, stop t)."""
    cfg = config.load(None, [f"rounds={rounds}", *overrides])
    online, sched = OnlineFit(cfg), Scheduler(cfg, [])
    files = RunFiles(tmp_path / "run")
    files.prepare(config.dump(cfg))
    rng = np.random.default_rng(seed)
    seen, fits = [], {}
    for t in range(rounds + 1):
        s, v, _ = (float(x) for x in TRUE.predict(t))
        m = {"U_s": s * (1 + noise * rng.standard_normal()), "U_v": v * (1 + noise * rng.standard_normal())}
        seen.append(RoundRecord(t, t, m, {}, {}))
        fit, stop = online.after_round(t, seen, sched)
        if fit is not None:
            fits[t] = fit
            files.fit(t, fit)
        if not stop and t < rounds:
            sched.examples(t, seen)
            m.update(sched.metrics(t))
        files.record(seen[-1])
        files.state(t, t, "run", stop, sched.state())
        if stop:
            return files.root, fits, t
    return files.root, fits, None


def cli_stop(capsys, folder, t: int, eps: float) -> dict:
    rc = main(["fit", "--run", str(folder), "--first", str(t), "--stop-below", str(eps), "--json", "--n-boot", "0"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    return json.loads(out)["stop"]


@pytest.mark.parametrize("eps,noise,seed", [(0.3, 0.01, 0), (0.05, 0.02, 1), (1e3, 0.03, 2)])
def test_cli_on_the_run_folder_takes_the_runs_decision_every_round(tmp_path, capsys, eps, noise, seed):
    folder, fits, t_stop = write_run(tmp_path, [f"stop.when_predicted_gain_below={eps}"], 8, noise, seed)
    assert fits
    for t, fit in fits.items():
        assert cli_stop(capsys, folder, t, eps) == json.loads(json.dumps(fit["stop"])), t
    if t_stop is not None:  # the stop is the last round kept, and said so by the CLI on the whole folder
        assert max(fits) == t_stop and fits[t_stop]["stop"]["decision"] == "stop"
    else:  # the last round never stops, whatever the fit says
        assert fits[8]["stop"]["decision"] == "continue" and fits[8]["stop"]["reason"].startswith("the last round")


def test_external_data_pending_then_decided_on_the_rounds_after_its_jump(tmp_path, capsys):
    """All external data in training round 4: rounds 3 and 4 wait for it (pending), later rounds decide only on the
    rounds measured after the jump (undetermined until 4 of them: rounds 5..8); the CLI reproduces each."""
    folder, fits, _ = write_run(tmp_path, ["stop.when_predicted_gain_below=1000", "external.strategy=explicit",
                                           "external.budget=8", "external.shares=[0,0,0,0,1,0,0,0,0,0]"], 10, 0.01, 3)
    for t in (3, 4):
        assert fits[t]["stop"]["decision"] == "continue"
        assert fits[t]["stop"]["reason"].startswith("8 external examples are still to be used: not stopping")
    for t in (5, 6, 7):
        assert fits[t]["stop"]["decision"] == "undetermined" and "too few rounds" in fits[t]["stop"]["reason"]
        assert fits[t]["stop"]["reason"].startswith("on the rounds after the external data of training round 4")
    assert fits[8]["stop"]["rounds"] == [5, 6, 7, 8]
    for t, fit in fits.items():
        assert cli_stop(capsys, folder, t, 1000) == json.loads(json.dumps(fit["stop"])), t
