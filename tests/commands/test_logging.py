"""svgap says what it does through `logging` (issue 24): `--quiet` and `--log-level` on every command, a run's
JSON log in its run folder, one redaction for every line, and no `print` outside the commands."""
from __future__ import annotations

import ast
import json
import logging
from pathlib import Path

import pytest

from orchestrator import redact
from orchestrator.cli import main
from orchestrator.log import OWN, RUN_LOG, setup_logging

ROOT = Path(__file__).resolve().parents[2]
SECRET = "hunter22pw"
URI = f"http://svgap:{SECRET}@127.0.0.1:9/"


@pytest.fixture(autouse=True)
def _logging_as_it_was():
    """setup_logging configures the process; put the handlers and levels back for the tests after these."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    own = {n: logging.getLogger(n).level for n in OWN}
    yield
    for h in [h for h in root.handlers if h not in handlers]:
        root.removeHandler(h)
        h.close()
    root.setLevel(level)
    for n, lvl in own.items():
        logging.getLogger(n).setLevel(lvl)


def _rows(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_console_lines_and_json_lines_carry_no_secret(tmp_path, capsys):
    redact.remember(URI)
    setup_logging("INFO", json_path=tmp_path / "log.jsonl")
    log = logging.getLogger("orchestrator.store.tracking")
    log.info("store %s opened", URI)
    log.warning(f"password {SECRET} rejected")
    log.debug("a debug line")
    err = capsys.readouterr().err
    assert SECRET not in err, err
    assert "svgap: store http://svgap:***@127.0.0.1:9/ opened" in err
    assert "svgap: warning: password *** rejected" in err and "a debug line" not in err
    rows = _rows(tmp_path / "log.jsonl")
    assert SECRET not in json.dumps(rows)
    assert [(r["level"], r["logger"]) for r in rows] == [("INFO", "orchestrator.store.tracking"),
                                                         ("WARNING", "orchestrator.store.tracking")]
    assert rows[1]["message"] == "password *** rejected"


def test_quiet_console_shows_warnings_only_the_json_log_keeps_progress(tmp_path, capsys):
    setup_logging("INFO", quiet=True, json_path=tmp_path / "log.jsonl")
    logging.getLogger("orchestrator.run.round").info("round 0: generated 4x2 candidates in 0.1s")
    logging.getLogger("workloads.arithmetic.cache").warning("cache entry refused")
    assert capsys.readouterr().err == "svgap: warning: cache entry refused\n"
    assert [r["message"] for r in _rows(tmp_path / "log.jsonl")] == ["round 0: generated 4x2 candidates in 0.1s",
                                                                     "cache entry refused"]


@pytest.mark.parametrize("where", ["before", "after"])
def test_log_level_debug_shows_more_and_is_redacted(tmp_path, capsys, where):
    argv = ["sync", str(tmp_path / "missing"), "--tracking-uri", URI]
    assert main(argv) == 2
    plain = capsys.readouterr().err
    assert main(["--log-level", "debug", *argv] if where == "before" else [*argv, "--log-level", "DEBUG"]) == 2
    debug = capsys.readouterr().err
    assert "svgap: debug" not in plain and plain.count("\n") == 1
    assert "svgap: debug: sync: " in debug and "tracking_uri='http://svgap:***@127.0.0.1:9/'" in debug, debug
    assert SECRET not in plain + debug and debug.splitlines()[-1] == plain.strip()


def test_bad_log_level_is_one_line_exit_2(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--log-level", "loud", "plan"])
    assert e.value.code == 2 and "--log-level" in capsys.readouterr().err


def test_run_writes_its_json_log_with_round_progress(local_ray, base_model_dir, tmp_path, capsys):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    sets = ["workload.train_prompts=16", "workload.heldout_prompts=16", "generation.n=2", "rounds=1",
            "training.epochs=1", f"model.path={base_model_dir}", f"tracking.out_dir={tmp_path / 'runs'}"]
    argv = ["run", "--quiet", "--tracking-uri", uri] + [a for s in sets for a in ("--set", s)]
    assert main(argv) == 0
    cap = capsys.readouterr()
    assert "MLflow run id:" in cap.out  # the result table still goes to stdout
    assert "done in" not in cap.err and "generated" not in cap.err, cap.err  # --quiet: no progress lines
    run_dir = next((tmp_path / "runs").iterdir())
    rows = _rows(run_dir / RUN_LOG)
    messages = [r["message"] for r in rows]
    assert any(m.startswith("model: ") for m in messages)  # from before the run folder existed
    assert any(m.startswith(f"MLflow run {run_dir.name}") for m in messages)
    assert [r["round"] for r in rows if " done in " in r["message"]] == [0, 1]
    assert any(m.startswith("round 0: generated") for m in messages)
    assert all({"time", "level", "logger", "message"} <= set(r) for r in rows)

    # the same command on a finished run folder: its progress line shows, unless --quiet
    assert main(["sync", str(run_dir), "--tracking-uri", uri]) == 0
    assert f"svgap: sync {run_dir} -> run {run_dir.name}" in capsys.readouterr().err
    assert main(["--quiet", "sync", str(run_dir), "--tracking-uri", uri]) == 0
    assert "svgap: sync" not in capsys.readouterr().err


def test_workload_plugins_may_still_take_progress(default_workload, svgap_cache, base_model_dir):
    """The plug-in API keeps the `progress` keyword (deprecated) so a caller written before still works."""
    with pytest.warns(DeprecationWarning, match="progress"):
        assert default_workload.base_model(svgap_cache, progress=lambda m: None) == base_model_dir


def _prints(path: Path) -> list[int]:
    tree = ast.parse(path.read_text(), str(path))
    return [n.lineno for n in ast.walk(tree)
            if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "print"]


def test_no_print_outside_the_commands():
    """Everything else logs: a print would skip --quiet, the run's JSON log and the redaction filter."""
    allowed = {ROOT / "orchestrator" / "log.py"}
    found = {str(p.relative_to(ROOT)): lines for pkg in ("orchestrator", "workloads")
             for p in sorted((ROOT / pkg).rglob("*.py"))
             if (ROOT / "orchestrator" / "commands") not in p.parents and p not in allowed
             for lines in [_prints(p)] if lines}
    assert not found, f"print() outside orchestrator/commands/: {found}"
