"""`svgap run --resume` (issue 13 item 1): a driver killed with SIGKILL mid-round continues to the same numbers as an
uninterrupted run -- real `svgap run` subprocess, real Ray, real sqlite MLflow, the real (cached) base model -- and
every bad resume is one line, exit 2, nothing written."""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import ray
import yaml

from orchestrator import config

from orchestrator.store import mirror, tracking
from orchestrator.cli import main
from orchestrator.store.records import ROUND_METRICS
from orchestrator.store.run_store import RunFiles
from stores import assert_same_metrics, sqlite_uri

ROOT = Path(__file__).resolve().parents[2]


def tiny(tmp_path, base_model_dir, *extra) -> list[str]:
    """4 rounds of 16 prompts x 4 candidates, 16 held-out prompts: about a second a round; 3 actors."""
    return ["workload.train_prompts=16", "workload.heldout_prompts=16", "generation.n=4", "rounds=4",
            "training.epochs=1", "resources.generation.actors=1", f"tracking.out_dir={tmp_path / 'runs'}", f"model.path={base_model_dir}", *extra]


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    """One sqlite store for the bad-input cases (creating one costs seconds); each case makes its own run in it."""
    uri = sqlite_uri(tmp_path_factory.mktemp('store') / 'mlflow.db')
    mirror.RunLogger(uri, "svgap", None, {})
    return uri


def _kill_in_round_2(cmd: list[str], cwd: Path, timeout: float = 240) -> str:
    """Start `svgap run`, SIGKILL it once round 2 has generated (mid-round: before it verifies, trains, commits);
    returns the MLflow run id it printed. Its own process group is ended too (anything left of it is ours)."""
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    run_id, seen, t0 = None, [], time.monotonic()
    try:
        for line in proc.stdout:
            seen.append(line)
            if m := re.search(r"MLflow run (\w{32})", line):
                run_id = m.group(1)
            if "round 2: generated" in line:
                os.kill(proc.pid, signal.SIGKILL)
                break
            assert time.monotonic() - t0 < timeout, "".join(seen[-20:])
        proc.wait(timeout=30)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert proc.returncode == -signal.SIGKILL, "".join(seen[-20:])
    assert run_id, "".join(seen[-20:])
    return run_id


@pytest.mark.slow
def test_kill_9_in_round_2_then_resume_equals_uninterrupted(local_ray, base_model_dir, store, tmp_path, capsys):
    uri = store
    cfg_path = tmp_path / "tiny.yaml"
    cfg_path.write_text(config.dump(config.load(None, tiny(tmp_path, base_model_dir))))
    # the driver joins the test's Ray as a driver joins a cluster: its death ends its job (actors, placement groups)
    address = ray.get_runtime_context().gcs_address
    run_id = _kill_in_round_2([sys.executable, "-m", "orchestrator.cli", "run", str(cfg_path), "--tracking-uri",
                               uri, "--address", address], ROOT)
    run_dir = tmp_path / "runs" / run_id
    state = json.loads((run_dir / "state.json").read_text())
    assert state["last_finished_round"] == 1 and state["model_version"] == 2, state
    assert tracking.get_run(run_id, uri).info.status == "RUNNING"  # the killed driver could not end it

    # resume by the printed run id (the folder comes from MLflow's tracking.out_dir param); a resource key may change
    assert main(["run", "--resume", run_id, "--tracking-uri", uri, "--set", "resources.timeout_s=300"]) == 0
    out = capsys.readouterr()
    assert f"MLflow run id: {run_id}" in out.out
    assert "resuming run" in out.err and "at round 2 with model version 2" in out.err

    ref = main(["run", str(cfg_path), "--tracking-uri", uri, "--set", f"tracking.out_dir={tmp_path / 'ref'}"])
    assert ref == 0
    ref_id = re.search(r"MLflow run id: (\w+)", capsys.readouterr().out).group(1)

    resumed = assert_same_metrics(run_id, ref_id, uri)
    for name in ROUND_METRICS:
        assert sorted(resumed[name]) == [0, 1, 2, 3, 4], name

    ref_dir = tmp_path / "ref" / ref_id
    for t in range(5):  # the training rows (BoN picks) of every round, byte for byte
        assert (run_dir / "picks" / f"round_{t:03d}.jsonl").read_text() == \
            (ref_dir / "picks" / f"round_{t:03d}.jsonl").read_text(), t
        assert (run_dir / "rounds" / f"round_{t:03d}.json").is_file()
    assert json.loads((run_dir / "state.json").read_text())["last_finished_round"] == 4
    assert not list(run_dir.rglob("*.tmp*"))
    resumes = [json.loads(x) for x in (run_dir / "resumes.jsonl").read_text().splitlines()]
    assert [r["from_round"] for r in resumes] == [2]
    arts = tracking.artifact_paths(run_id, uri=uri)
    assert {f"picks/round_{t:03d}.jsonl" for t in range(5)} <= set(arts)


# ---- bad input: one line, exit 2, nothing written ---------------------------------------------------------------
def _interrupted(tmp_path, base_model_dir, uri, last: int = 1, **edit) -> tuple[str, Path, str]:
    """A run folder as a killed driver leaves it after round `last` (a real MLflow run, RUNNING), without Ray."""
    cfg = config.load(None, tiny(tmp_path, base_model_dir))
    logger = mirror.RunLogger(uri, "svgap", None, {"tracking.out_dir": cfg.tracking.out_dir})
    files = RunFiles(Path(cfg.tracking.out_dir) / logger.run_id)
    files.prepare(edit.get("config_text", config.dump(cfg)))
    for t in range(last + 1):
        (files.root / "rounds" / f"round_{t:03d}.json").write_text(json.dumps(
            {"round": t, "version": t, "metrics": {"U_s": 1.0}, "timings": {}, "counts": {}, "train": {}}))
        (files.root / "adapters" / f"v{t + 1:03d}.npz").write_bytes(b"")
    files.state(last, last + 1, logger.run_id)
    return logger.run_id, files.root, uri


def _snapshot(root: Path) -> dict:
    return {str(p.relative_to(root)): (p.stat().st_mtime_ns, p.stat().st_size) for p in root.rglob("*")}


def _bad(argv, capsys, needle, root=None, uri=None, run_id=None):
    before = _snapshot(root) if root else None
    status = tracking.get_run(run_id, uri).info.status if run_id else None
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1, err
    if root:
        assert _snapshot(root) == before
    if run_id:
        assert tracking.get_run(run_id, uri).info.status == status


def test_resume_of_a_missing_run(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    uri = sqlite_uri(tmp_path / 'none.db')
    _bad(["run", "--resume", "0123456789abcdef0123456789abcdef", "--tracking-uri", uri], capsys,
         "unknown MLflow run id '0123456789abcdef0123456789abcdef': there is no tracking store")
    assert not (tmp_path / "none.db").exists()
    _bad(["run", "--resume", str(tmp_path / "nope")], capsys, "no such run folder")


def test_resume_of_an_unknown_id_in_an_existing_store(tmp_path, base_model_dir, store, capsys):
    run_id, root, uri = _interrupted(tmp_path, base_model_dir, store)
    _bad(["run", "--resume", "f" * 32, "--tracking-uri", uri], capsys, f"unknown MLflow run id '{'f' * 32}'")


def test_resume_of_a_finished_run(tmp_path, base_model_dir, store, capsys):
    run_id, root, uri = _interrupted(tmp_path, base_model_dir, store, last=4)
    _bad(["run", "--resume", run_id, "--tracking-uri", uri], capsys, f"run {run_id} already finished",
         root, uri, run_id)
    run_id, root, uri = _interrupted(tmp_path, base_model_dir, store, last=1)
    mirror.RunLogger.reattach(uri, run_id).end("FINISHED")
    _bad(["run", "--resume", str(root), "--tracking-uri", uri], capsys, "already finished", root, uri, run_id)


@pytest.mark.parametrize("damage, needle", [
    (lambda root: (root / "rounds" / "round_001.json").unlink(), "incomplete: rounds/round_001.json is missing"),
    (lambda root: (root / "adapters" / "v002.npz").unlink(), "incomplete: the model version 2"),
    (lambda root: (root / "config.yaml").unlink(), "incomplete: config.yaml is missing"),
    (lambda root: (root / "state.json").write_text("{\"run_id\": "), "incomplete: state.json is unreadable"),
    (lambda root: (root / "config.yaml").write_text((root / "config.yaml").read_text().replace(
        "n: 4", "n: 0", 1)), "its config no longer validates: generation.n"),
    (lambda root: (root / "config.yaml").write_text("rounds: [\n"), "is not valid YAML"),
])
def test_resume_of_an_incomplete_or_invalid_folder(tmp_path, base_model_dir, store, capsys, damage, needle):
    run_id, root, uri = _interrupted(tmp_path, base_model_dir, store)
    damage(root)
    _bad(["run", "--resume", str(root), "--tracking-uri", uri], capsys, needle, root, uri, run_id)


@pytest.mark.parametrize("override, ok", [("workload.train_prompts=8", False), ("seed=1", False),
                                          ("resources.generation.actors=1", True), ("resources.timeout_s=60", True)])
def test_set_on_resume_only_for_resources_and_timeouts(tmp_path, base_model_dir, store, capsys, override, ok):
    from orchestrator.run import resume
    from orchestrator.errors import SvgapError

    run_id, root, uri = _interrupted(tmp_path, base_model_dir, store)
    if ok:
        cfg, point, _ = resume.load(str(root), [override], uri)
        key, _, value = override.partition("=")
        node = cfg
        for part in key.split("."):
            node = getattr(node, part)
        assert node == yaml.safe_load(value) and point.last_round == 1 and point.version == 2
        return
    with pytest.raises(SvgapError, match="not allowed with --resume"):
        resume.load(str(root), [override], uri)
    _bad(["run", "--resume", str(root), "--tracking-uri", uri, "--set", override], capsys,
         "not allowed with --resume", root, uri, run_id)


def test_resume_of_a_run_whose_driver_still_holds_it(tmp_path, base_model_dir, store, capsys):
    run_id, root, uri = _interrupted(tmp_path, base_model_dir, store)
    live = subprocess.Popen([sys.executable, "-c", "import fcntl,sys,time; f=open(sys.argv[1],'a+'); "
                             "fcntl.flock(f, fcntl.LOCK_EX); f.write('pid live'); f.flush(); print('held', flush=True); "
                             "time.sleep(60)", str(root / ".lock")], stdout=subprocess.PIPE, text=True)
    try:
        assert live.stdout.readline().strip() == "held"
        _bad(["run", "--resume", str(root), "--tracking-uri", uri], capsys, "is still running", root, uri, run_id)
    finally:
        live.kill()
        live.wait()


def test_resume_with_a_config_file_too(tmp_path, capsys):
    assert main(["run", "configs/arithmetic.yaml", "--resume", str(tmp_path)]) == 2
    assert "--resume takes the config from the run folder" in capsys.readouterr().err


def test_scheduler_state_restores_what_external_data_was_used(default_workload):
    """A resumed scheduler hands the next round exactly the examples the uninterrupted one would (state.json)."""
    from orchestrator.run.scheduler import build_scheduler

    cfg = config.load(None, ["rounds=4", "external.strategy=uniform", "external.budget=12"])
    first, second = build_scheduler(cfg, default_workload), build_scheduler(cfg, default_workload)
    for t in range(2):
        first.examples(t, [])
    assert first.used > 0  # rounds 0 and 1 used some of the budget: a fresh scheduler would hand them out again
    state = json.loads(json.dumps(first.state()))  # through state.json
    second.restore(state)
    assert second.remaining == first.remaining and second.metrics(1) == first.metrics(1)
    for t in (2, 3):
        assert [p.id for p in second.examples(t, [])] == [p.id for p in first.examples(t, [])]
    assert first.remaining == second.remaining == 0


def test_what_mlflow_has_decides_what_a_resume_logs(tmp_path, base_model_dir, store):
    """Steps beyond the last finished round that MLflow already has are not logged again; finished rounds whose
    metrics MLflow lacks (held during a tracking outage when the driver died) are sent on resume."""
    from orchestrator.run import resume

    run_id, root, uri = _interrupted(tmp_path, base_model_dir, store)  # rounds 0, 1 finished; MLflow has nothing
    mirror.log_metrics(run_id, {"U_s": 1.0}, step=0, uri=uri)
    mirror.log_metrics(run_id, {"U_s": 0.5, "U_v": 0.4}, step=2, uri=uri)  # the round in flight had logged
    _, point, _ = resume.load(str(root), [], uri)
    assert point.logged == {("U_s", 2), ("U_v", 2)}
    assert point.missing == {1: {"U_s": 1.0}}
    assert "finished rounds [1]" in resume.describe(point) and "steps [2]" in resume.describe(point)


# ---- a run folder written before the redesign ---------------------------------------------------------------------
OLD_RUN = ROOT / "tests" / "data" / "old_run"
OLD_ID = "4039c45ed88944148a4993f02b41e06c"


def _old_store(tmp_path: Path) -> str:
    """A copy of the old run's tracking store, its artifact folders moved under tmp_path (they named the folder
    the old run was made in): the store as its user would find it, minus a path that exists only there."""
    db = tmp_path / "tracking.db"
    shutil.copy(OLD_RUN / "tracking.db", db)
    with sqlite3.connect(db) as con:
        for table, col in (("experiments", "artifact_location"), ("runs", "artifact_uri")):
            con.execute(f"update {table} set {col} = replace({col}, ?, ?)",
                        ("/work/wt/old/mlruns", str(tmp_path / "mlruns")))
    return sqlite_uri(db)


@pytest.mark.slow
def test_a_run_folder_written_before_the_redesign_still_resumes(local_ray, base_model_dir, tmp_path, capsys):
    """tests/data/old_run: `svgap run configs/arithmetic.yaml` with rounds=2 (16 prompts x 4 candidates, 16
    held-out) made by the code before the store/run/roles layout (commit d747dbe), its driver killed with SIGKILL
    once round 2 had started: rounds 0 and 1 committed, model version 2 saved, its MLflow run left RUNNING. The
    current code resumes it at round 2 and finishes it; what the old driver committed is left as it was."""
    root = tmp_path / OLD_ID
    shutil.copytree(OLD_RUN / OLD_ID, root)
    uri = _old_store(tmp_path)
    kept = {p: (root / p).read_bytes() for p in ("rounds/round_000.json", "rounds/round_001.json",
                                                 "picks/round_000.jsonl", "picks/round_001.jsonl",
                                                 "adapters/v002.npz", "config.yaml")}
    assert main(["run", "--resume", str(root), "--tracking-uri", uri]) == 0
    out = capsys.readouterr()
    assert f"MLflow run id: {OLD_ID}" in out.out and "at round 2 with model version 2" in out.err
    state = json.loads((root / "state.json").read_text())
    assert state["run_id"] == OLD_ID and state["last_finished_round"] == 2
    assert all((root / p).read_bytes() == b for p, b in kept.items())
    assert json.loads((root / "rounds" / "round_002.json").read_text())["version"] == 2
    assert tracking.get_run(OLD_ID, uri).info.status == "FINISHED"
    logged = tracking.run_metrics(OLD_ID, uri)
    for name in ROUND_METRICS:
        assert sorted(logged[name]) == [0, 1, 2], name
    assert [json.loads(x)["from_round"] for x in (root / "resumes.jsonl").read_text().splitlines()] == [2]
