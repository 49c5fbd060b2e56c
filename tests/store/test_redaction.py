"""Credentials never leave the process (issue 15 item 1): a password in a tracking URI -- in YAML, `--set`,
`--tracking-uri` or $MLFLOW_TRACKING_URI -- is masked in every line printed and in everything logged or saved."""
from __future__ import annotations

import json
import re

import pytest
import yaml

from orchestrator import config, redact

from orchestrator.store import tracking
from orchestrator.cli import main
from stores import sqlite_uri

SECRET = "s3cr3t"


# ---- the redactor ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("raw, shown", [
    ("http://user:s3cr3t@127.0.0.1:5000", "http://user:***@127.0.0.1:5000"),
    ("https://tok3n-abc@mlflow.example.org/api", "https://***@mlflow.example.org/api"),
    ("postgresql://svgap:p%40ss@db:5432/mlflow?sslmode=require&password=zzz9", "postgresql://svgap:***@db:5432/"
                                                                                 "mlflow?sslmode=require&password=***"),
    ("mysql+pymysql://u:pw1@h/db?auth_token=abcd", "mysql+pymysql://u:***@h/db?auth_token=***"),
    (sqlite_uri("/tmp/me@home/mlflow.db"), sqlite_uri("/tmp/me@home/mlflow.db")),  # an @ in a path is no credential
    ("http://127.0.0.1:5000", "http://127.0.0.1:5000"),
    ("error: could not reach 'http://a:b0b@host/x' (refused)", "error: could not reach 'http://a:***@host/x' (refused)"),
])
def test_uris_are_masked(raw, shown):
    assert redact.text(raw) == shown
    assert redact.uri(raw) == shown and redact.uri(None) is None


@pytest.mark.parametrize("raw, shown", [
    ("login with token=abc123xyz please", "login with token=*** please"),
    ("HF_TOKEN=hf_abcdefgh MLFLOW_TRACKING_PASSWORD='pw9' RAY_ADDRESS=http://h:8265",
     "HF_TOKEN=*** MLFLOW_TRACKING_PASSWORD='***' RAY_ADDRESS=http://h:8265"),
    ("aws_secret_access_key = wJalrXUtnFEMI/K7MDENG+bPxRfiCY", "aws_secret_access_key = ***"),
    ("tracking:\n  api_key: sk-123456\n  uri: http://h:5000", "tracking:\n  api_key: ***\n  uri: http://h:5000"),
    ("Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.e30.x", "Authorization: Bearer ***"),
    ("{'Authorization': 'Basic dXNlcjpwYXNz'}", "{'Authorization': 'Basic ***'}"),
    ("sent bearer abcdefgh12345678 to the head", "sent bearer *** to the head"),
    ("key id AKIAIOSFODNN7EXAMPLE and ASIAABCDEFGHIJKLMNOP", "key id *** and ***"),
    # what is no secret stays as it is
    ("max_new_tokens: 8\npad_token: <pad>\nquantity: per_token", "max_new_tokens: 8\npad_token: <pad>\nquantity: per_token"),
    ('{"nll_per_token": 1.25, "tokens": 3}', '{"nll_per_token": 1.25, "tokens": 3}'),
    ("the auth token: was refused by the head", "the auth token: was refused by the head"),
    ("RAY_AUTH_TOKEN_PATH=/tmp/c/auth_token", "RAY_AUTH_TOKEN_PATH=/tmp/c/auth_token"),
])
def test_every_kind_of_secret_is_masked(raw, shown):
    assert redact.text(raw) == shown


def test_a_commands_output_passes_the_same_redaction_line_by_line(capsys):
    """cli.main wraps stdout/stderr in redact.streams(): a secret split over two writes is still masked."""
    import sys

    with redact.streams():
        sys.stdout.write("MLflow: http://m:5000/?tok")
        sys.stdout.write("en=tok3n-abc\nnext line\n")
        print("Authorization: Bearer tok3n-abcdefgh", file=sys.stderr)
        sys.stdout.write("partial token=tok3n-zz")  # no newline: passed on when the command ends
    out, err = capsys.readouterr()
    assert out == "MLflow: http://m:5000/?token=***\nnext line\npartial token=***" and "tok3n" not in err
    import inspect

    from orchestrator import cli
    assert "redact.streams()" in inspect.getsource(cli.main)


def test_remembered_secret_is_masked_alone_too():
    """A driver's own message may quote the password without the URI around it (also percent-decoded)."""
    redact.remember("postgresql://svgap:pa%24%24word9@db/mlflow")
    assert redact.text('FATAL: password "pa$$word9" rejected; also pa%24%24word9') == \
        'FATAL: password "***" rejected; also ***'
    data = {"tracking.uri": "postgresql://svgap:pa%24%24word9@db/mlflow", "n": 4, "l": ["x pa$$word9"]}
    assert redact.data(data) == {"tracking.uri": "postgresql://svgap:***@db/mlflow", "n": 4, "l": ["x ***"]}


def test_a_short_lone_user_is_masked_in_its_uri_only():
    """`http://mlflow@host`: masked inside URIs, but the word is not hunted elsewhere (a long one, a token, is)."""
    redact.remember("http://mlflow@tracking:5000")
    assert redact.text("open http://mlflow@tracking:5000 with mlflow ui") == "open http://***@tracking:5000 with mlflow ui"
    redact.remember("https://ghp_0123456789abcdefXYZ@tracking")
    assert redact.text("token ghp_0123456789abcdefXYZ rejected") == "token *** rejected"


def test_mlflow_password_variable_is_a_secret(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "env-pw-77")
    redact.remember_env()
    assert redact.text("auth failed for env-pw-77") == "auth failed for ***"


# ---- the CLI: one line, no secret -----------------------------------------------------------------------------------
def _one_line_without_secret(capsys) -> str:
    cap = capsys.readouterr()
    assert SECRET not in cap.out + cap.err, cap.err
    assert cap.err.count("\n") == 1 and cap.err.startswith("svgap: error: "), cap.err
    return cap.err


def test_run_with_password_in_tracking_uri_fails_in_one_line_without_it(tmp_path, capsys):
    """The acceptance command: nothing listens on port 9; the error names the server, masked."""
    rc = main(["run", "--tracking-uri", f"http://user:{SECRET}@127.0.0.1:9",
               "--set", f"tracking.out_dir={tmp_path / 'runs'}"])
    assert rc == 2
    err = _one_line_without_secret(capsys)
    assert "tracking server http://user:***@127.0.0.1:9 unreachable" in err
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("where", ["env", "yaml", "set"])
def test_password_from_env_yaml_or_set_is_masked_in_errors(tmp_path, capsys, monkeypatch, where):
    uri = f"http://svgap:{SECRET}@127.0.0.1:9"
    argv = ["run", "--set", f"tracking.out_dir={tmp_path / 'runs'}"]
    if where == "env":
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    elif where == "yaml":
        cfg = tmp_path / "c.yaml"
        cfg.write_text(yaml.safe_dump({"tracking": {"uri": uri}}))
        argv.insert(1, str(cfg))
    else:
        argv += ["--set", f"tracking.uri={uri}"]
    assert main(argv) == 2
    assert "http://svgap:***@127.0.0.1:9" in _one_line_without_secret(capsys)


def test_malformed_uri_with_password_is_one_line(tmp_path, capsys):
    assert main(["run", "--tracking-uri", f"http://user:{SECRET}@127.0.0.1:port",
                 "--set", f"tracking.out_dir={tmp_path / 'runs'}"]) == 2
    assert "is malformed" in _one_line_without_secret(capsys)


# ---- a real run: no param, artifact or run-folder file carries the password ---------------------------------------
@pytest.mark.slow
def test_run_logs_and_saves_no_credential(local_ray, base_model_dir, tmp_path, tracking_uri, capsys):
    """The config names a tracking URI with a password (as a shared YAML would); this run logs to a local store
    (--tracking-uri wins), so everything the run writes can be read back: params, every artifact, every file of
    the run folder, stdout and stderr."""
    cfg_file = tmp_path / "shared.yaml"
    cfg = config.load(None, ["workload.train_prompts=16", "workload.heldout_prompts=8", "generation.n=2", "rounds=1",
                             "training.epochs=1", f"model.path={base_model_dir}",
                             f"tracking.out_dir={tmp_path / 'runs'}",
                             f"tracking.uri=postgresql://svgap:{SECRET}@db.internal:5432/mlflow?password={SECRET}"])
    cfg_file.write_text(config.dump(cfg))
    uri = tracking_uri
    assert main(["run", str(cfg_file), "--tracking-uri", uri]) == 0
    cap = capsys.readouterr()
    assert SECRET not in cap.out + cap.err
    run_id = re.search(r"MLflow run id: (\w+)", cap.out).group(1)

    run = tracking.get_run(run_id, uri)
    assert run.data.params["tracking.uri"] == "postgresql://svgap:***@db.internal:5432/mlflow?password=***"
    assert not [k for k, v in {**run.data.params, **run.data.tags}.items() if SECRET in v]
    arts = tracking.artifact_paths(run_id, uri=uri)
    assert "config.yaml" in arts and len(arts) >= 3
    for a in arts:
        assert SECRET not in tracking.artifact_text(run_id, a, uri), a
    files = [p for p in (tmp_path / "runs" / run_id).rglob("*") if p.is_file()]
    assert len(files) >= 5
    for p in files:
        assert SECRET.encode() not in p.read_bytes(), p
    saved = yaml.safe_load((tmp_path / "runs" / run_id / "config.yaml").read_text())
    assert saved["tracking"]["uri"] == "postgresql://svgap:***@db.internal:5432/mlflow?password=***"
    assert json.loads((tmp_path / "runs" / run_id / "state.json").read_text())["last_finished_round"] == 1
