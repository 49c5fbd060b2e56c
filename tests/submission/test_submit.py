"""`svgap submit` refuses bad input before anything reaches a cluster: one line, exit 2. No Ray cluster runs here (the
token cases against a real token-auth cluster, and a real job, are in cluster/test_cluster_local.py); an address that
must be reachable is a plain listening socket, so the refusal is svgap's own, not a connection error."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from orchestrator.cli import main
from stores import sqlite_uri

pytestmark = [pytest.mark.cluster]

ROOT = Path(__file__).resolve().parents[2]
SMALL = ["--set", "rounds=1"]


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    """No cluster, tracking server or token from the developer's shell leaks into a case."""
    for k in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH",
              "RAY_JOB_HEADERS"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no ~/.ray/auth_token either
    return tmp_path


@pytest.fixture
def listening():
    """A reachable TCP address that is not a Ray dashboard (the checks under test come before any request)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(8)
    yield f"http://127.0.0.1:{s.getsockname()[1]}"
    s.close()


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _refused(capsys, argv: list[str], needle: str) -> str:
    rc = main(["submit", *argv])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert err.count("\n") == 1 and err.startswith("svgap: error: "), err  # one line, no traceback
    assert needle in err, err
    return err


@pytest.mark.parametrize("uri", [sqlite_uri("mlflow.db"), sqlite_uri("runs/x.db"), "mlruns", "./mlruns",
                                 "file:mlruns"])
def test_relative_store_is_refused_naming_why_and_what_instead(clean_env, capsys, uri):
    err = _refused(capsys, SMALL + ["--address", "http://127.0.0.1:1", "--tracking-uri", uri], "relative path")
    assert "head node" in err and "MLflow server URL" in err


def test_no_tracking_uri_means_the_relative_default_and_is_refused(clean_env, capsys):
    _refused(capsys, SMALL + ["--address", "http://127.0.0.1:1"], "no tracking URI for the job")


def test_tracking_uri_from_the_environment_is_checked_too(clean_env, capsys, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", sqlite_uri("mlflow.db"))
    _refused(capsys, SMALL + ["--address", "http://127.0.0.1:1"], "relative path")


def test_password_in_the_tracking_uri_is_refused_and_not_shown(clean_env, capsys):
    err = _refused(capsys, SMALL + ["--address", "http://127.0.0.1:1", "--tracking-uri",
                                    "http://alice:s3cret@mlflow.example:5000"], "carries a password")
    assert "s3cret" not in err


def test_absolute_and_server_uris_pass_the_tracking_check():
    from orchestrator.submission.jobs import job_tracking_uri

    for uri in ("http://mlflow:5000", "https://m.example/x", sqlite_uri("/shared/mlflow.db"), "/shared/mlruns",
                "databricks"):
        assert job_tracking_uri(uri, None) == uri


@pytest.mark.parametrize("address, needle", [
    (None, "no Ray cluster address"),
    ("ray://10.0.0.5:10001", "expected the dashboard's URL"),
    ("10.0.0.5:6379", "expected the dashboard's URL"),
    ("http://host:port", "the port is not a number"),
])
def test_bad_address_is_one_line(clean_env, capsys, address, needle):
    argv = SMALL + ["--tracking-uri", "http://127.0.0.1:5000"] + (["--address", address] if address else [])
    _refused(capsys, argv, needle)


def test_unreachable_address_is_one_line(clean_env, capsys):
    err = _refused(capsys, SMALL + ["--tracking-uri", "http://127.0.0.1:5000", "--address",
                                    f"http://127.0.0.1:{_closed_port()}"], "unreachable")
    assert "Connection refused" in err


def test_invalid_config_is_refused_before_the_cluster_is_asked(clean_env, capsys):
    # no address, no tracking URI: the config is judged first
    _refused(capsys, ["--set", "generation.n=0"], "generation.n")
    _refused(capsys, [str(ROOT / "configs" / "nope.yaml")], "config file not found")


def test_bad_job_name(clean_env, capsys):
    _refused(capsys, SMALL + ["--name", "a b/c", "--address", "http://127.0.0.1:1", "--tracking-uri",
                              "http://127.0.0.1:5000"], "--name")


def test_token_mode_without_a_token_is_refused_before_any_request(clean_env, capsys, monkeypatch, listening):
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    _refused(capsys, SMALL + ["--address", listening, "--tracking-uri", "http://127.0.0.1:5000"],
             "RAY_AUTH_MODE=token but no Ray auth token found")


def test_token_path_to_a_missing_file_is_one_line(clean_env, capsys, monkeypatch, listening, tmp_path):
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(tmp_path / "no-such-token"))
    _refused(capsys, SMALL + ["--address", listening, "--tracking-uri", "http://127.0.0.1:5000"],
             "RAY_AUTH_TOKEN_PATH is set but file cannot be opened")


def test_token_sources_in_rays_order(clean_env, monkeypatch, tmp_path):
    from orchestrator.submission.client import auth_headers

    (tmp_path / "home" / ".ray").mkdir(parents=True)
    (tmp_path / "home" / ".ray" / "auth_token").write_text("from-home")
    (tmp_path / "tok").write_text("from-path")
    assert auth_headers()[0] == {"Authorization": "Bearer from-home"}
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(tmp_path / "tok"))
    assert auth_headers()[0] == {"Authorization": "Bearer from-path"}
    monkeypatch.setenv("RAY_AUTH_TOKEN", "from-env")
    headers, token = auth_headers()
    assert headers == {"Authorization": "Bearer from-env"} and token.source == "RAY_AUTH_TOKEN"
    monkeypatch.setenv("RAY_JOB_HEADERS", '{"Authorization": "Bearer mine"}')  # Ray's job CLI variable wins
    assert auth_headers()[0] == {"Authorization": "Bearer mine"}
    monkeypatch.delenv("RAY_JOB_HEADERS")
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")  # the user's explicit choice; svgap never sets it
    assert auth_headers()[0] == {}


def test_working_dir_carries_the_config_and_leaves_out_the_excludes(tmp_path):
    """The package Ray would upload, zipped by Ray's own create_package from the staged working dir."""
    from ray._private.runtime_env.packaging import create_package

    from orchestrator.submission import workdir

    work = workdir.stage("rounds: 1\n", ROOT)
    try:
        target = tmp_path / "pkg.zip"
        create_package(str(work.path), target, include_gitignore=True, excludes=work.excludes)
        names = set(zipfile.ZipFile(target).namelist())
    finally:
        work.remove()
    assert not work.path.exists()
    assert workdir.CONFIG_NAME in names and "orchestrator/cli.py" in names and "configs/arithmetic.yaml" in names
    for prefix in (".git/", ".venv/", "mlruns/", "runs/", ".pytest_cache/"):
        assert not any(n.startswith(prefix) for n in names), prefix
    assert not any("__pycache__" in n for n in names)
    assert not (ROOT / workdir.CONFIG_NAME).exists()  # nothing was written into the project


def test_working_dir_over_rays_upload_limit_is_refused_with_size_and_excludes(tmp_path):
    """Ray's own knob lowers its limit (RAY_max_grpc_message_size bounds GCS packages) so a 2 MiB file is over it."""
    proj = tmp_path / "proj"
    (proj / "orchestrator").mkdir(parents=True)
    (proj / "orchestrator" / "__init__.py").write_text("")
    (proj / "pyproject.toml").write_text("[project]\nname = 'svgap'\n")
    (proj / "data").mkdir()
    (proj / "data" / "blob.bin").write_bytes(os.urandom(2 * 1024 * 1024))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "MLFLOW_"))}
    env["RAY_max_grpc_message_size"] = str(1024 * 1024)
    server = socket.socket()  # reachable (the size check comes after the TCP probe), never asked anything
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    proc = subprocess.run([sys.executable, "-m", "orchestrator.cli", "submit", "--set", "rounds=1",
                           "--working-dir", str(proj), "--address", f"http://127.0.0.1:{server.getsockname()[1]}",
                           "--tracking-uri", "http://127.0.0.1:5000"], capture_output=True, text=True, timeout=120,
                          cwd=ROOT, env=env)
    server.close()
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert "over Ray's job upload limit of 1.0 MiB" in proc.stderr and "data 2.0 MiB" in proc.stderr
    assert "--exclude" in proc.stderr
    assert "token" not in proc.stderr  # refused before the cluster was asked anything


def test_no_upload_ships_only_the_config():
    from orchestrator.submission import workdir

    work = workdir.stage("rounds: 1\n", None)
    try:
        assert [p.name for p in work.path.iterdir()] == [workdir.CONFIG_NAME]
        assert work.runtime_env() == {"working_dir": str(work.path), "excludes": []}
    finally:
        work.remove()


def test_a_folder_that_is_no_project_is_not_uploaded(clean_env, capsys, listening, tmp_path):
    """e.g. svgap installed in site-packages: its parent folder is no project to ship (it would be gigabytes)."""
    (tmp_path / "site" / "orchestrator").mkdir(parents=True)
    _refused(capsys, SMALL + ["--working-dir", str(tmp_path / "site"), "--address", listening, "--tracking-uri",
                              "http://127.0.0.1:5000"], "not an svgap project folder")


def _project(tmp_path: Path) -> Path:
    proj = tmp_path / "proj"
    (proj / "orchestrator").mkdir(parents=True)
    (proj / "orchestrator" / "__init__.py").write_text("")
    (proj / "pyproject.toml").write_text("[project]\nname = 'svgap'\n")
    return proj


def test_secrets_and_local_stores_are_not_uploaded(tmp_path):
    """.env, keys, certificates, credentials folders, the sqlite store and caches stay out of Ray's package."""
    from ray._private.runtime_env.packaging import create_package

    from orchestrator.submission import workdir

    proj = _project(tmp_path)
    secrets = [".env", ".env.local", "server.key", "tls/cert.pem", ".ssh/id_rsa", ".aws/credentials", "mlflow.db",
               ".mypy_cache/x.json", "deep/er/.env", "id_ed25519"]
    for rel in secrets:
        (proj / rel).parent.mkdir(parents=True, exist_ok=True)
        (proj / rel).write_text("AKIAIOSFODNN7EXAMPLE")
    (proj / "orchestrator" / "ok.py").write_text("x = 1\n")
    work = workdir.stage("rounds: 1\n", proj)
    try:
        workdir.check_links(work)  # no link: nothing to refuse
        create_package(str(work.path), tmp_path / "pkg.zip", include_gitignore=True, excludes=work.excludes)
        names = set(zipfile.ZipFile(tmp_path / "pkg.zip").namelist())
    finally:
        work.remove()
    assert "orchestrator/ok.py" in names and workdir.CONFIG_NAME in names
    assert not names & set(secrets), sorted(names & set(secrets))


@pytest.mark.parametrize("inside", ["top", "nested"])
def test_a_symlink_leaving_the_working_dir_is_refused_before_anything_is_sent(clean_env, capsys, listening, tmp_path,
                                                                               inside):
    outside = tmp_path / "home" / ".ssh"
    outside.mkdir(parents=True)
    (outside / "id_rsa").write_text("PRIVATE")
    proj = _project(tmp_path)
    (proj / "orchestrator" / "inner.py").write_text("")
    (proj / "here").symlink_to(proj / "orchestrator" / "inner.py")  # a link inside the project is fine
    link = proj / "keys" if inside == "top" else proj / "orchestrator" / "keys"
    link.symlink_to(outside)
    err = _refused(capsys, SMALL + ["--working-dir", str(proj), "--address", listening, "--tracking-uri",
                                    "http://127.0.0.1:5000"], "symbolic link(s) lead outside it")
    assert f"keys -> {outside}" in err and "here" not in err.split("(", 1)[1]
    # left out explicitly, it is not shipped and not refused
    from orchestrator.submission import workdir

    work = workdir.stage("rounds: 1\n", proj, ["keys"])
    try:
        workdir.check_links(work)
    finally:
        work.remove()


@pytest.mark.parametrize("uri", ["http://mlflow.example:5000/?token=tok3n-abc123",
                                 "https://tok3n-abc1234567890xyz@mlflow.example", "http://m.example/?password=tok3n"])
def test_a_token_in_the_tracking_uri_is_refused_never_shown_nor_sent(clean_env, capsys, uri):
    err = _refused(capsys, SMALL + ["--address", "http://127.0.0.1:1", "--tracking-uri", uri], "carries a password")
    assert "tok3n" not in err and "***" in err
