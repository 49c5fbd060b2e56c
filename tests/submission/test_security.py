"""Security defaults (issue 13 item 7), one test per rule that can be tested: MLflow servers bound to loopback in the
docs and cluster/, Ray token auth never switched off, YAML only through safe_load, no eval/exec (nor pickle-backed
loads of files), workloads imported only by registered name or an explicit module:Class, run folders created with
the user's umask, secrets never written to the run folder. Static checks read the repository's own files; the
behavioural ones run the real code."""
from __future__ import annotations

import ast
import functools
import os
import re
import stat
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CODE_DIRS = ("orchestrator", "workloads", "benchmarks", "cluster")


def _files(*patterns: str, dirs=CODE_DIRS) -> list[Path]:
    out: list[Path] = []
    for d in dirs:
        for pat in patterns:
            out += [p for p in (ROOT / d).rglob(pat) if ".venv" not in p.parts]
    return sorted(set(out))


@functools.lru_cache(maxsize=None)
def _call_list(path: Path) -> list:
    """(dotted name, node) of every call in a file: `eval` is the builtin, `x.eval` a method (model.eval())."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Call):
            f = node.func
            name = f.id if isinstance(f, ast.Name) else \
                f"{f.value.id}.{f.attr}" if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) else \
                f"?.{f.attr}" if isinstance(f, ast.Attribute) else ""
            out.append((name, node))
    return out


def _calls(path: Path):
    return _call_list(path)


def test_yaml_is_only_read_with_safe_load():
    bad = []
    for path in _files("*.py", dirs=CODE_DIRS + ("tests",)):
        for name, node in _calls(path):
            if name in ("yaml.load", "yaml.load_all", "yaml.full_load", "yaml.full_load_all", "yaml.unsafe_load",
                        "yaml.unsafe_load_all") or (name.startswith("yaml.") and
                                                    any(k.arg == "Loader" for k in node.keywords)):
                bad.append(f"{path.relative_to(ROOT)}:{node.lineno} {name}")
    assert not bad, bad


def test_a_config_with_a_python_tag_is_refused_and_runs_nothing(tmp_path, capsys):
    from orchestrator.cli import main

    marker = tmp_path / "pwned"
    cfg = tmp_path / "evil.yaml"
    cfg.write_text(f'rounds: !!python/object/apply:os.system ["touch {marker}"]\n')
    assert main(["run", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "is not valid YAML" in err and err.count("\n") == 1, err
    assert not marker.exists()


def test_no_eval_exec_or_pickle_loads_of_files():
    bad = []
    for path in _files("*.py"):
        for name, node in _calls(path):
            kw = {k.arg: k.value for k in node.keywords}
            if name in ("eval", "exec", "builtins.eval", "builtins.exec", "pickle.load", "pickle.loads",
                        "cloudpickle.load", "cloudpickle.loads", "marshal.loads"):
                bad.append(f"{path.relative_to(ROOT)}:{node.lineno} {name}")
            elif name.endswith(".load") and name.split(".")[0] in ("np", "numpy") and \
                    isinstance(kw.get("allow_pickle"), ast.Constant) and kw["allow_pickle"].value:
                bad.append(f"{path.relative_to(ROOT)}:{node.lineno} {name}(allow_pickle=True)")
            elif name == "torch.load" and not (isinstance(kw.get("weights_only"), ast.Constant)
                                               and kw["weights_only"].value is True):
                bad.append(f"{path.relative_to(ROOT)}:{node.lineno} torch.load without weights_only=True")
    assert not bad, bad


MLFLOW_CMD = re.compile(r"\bmlflow\s+(server|ui)\b")
HOST = re.compile(r"--host[=\s]+[\"']?([^\s\"'\\]+)")
LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")


def test_mlflow_servers_in_docs_and_cluster_bind_loopback():
    """Every `mlflow server` / `mlflow ui` command the project shows or runs binds 127.0.0.1 (or leaves MLflow's
    own default, which is loopback); binding wider is the user's explicit choice, never a copied default."""
    seen, bad = 0, []
    texts = [ROOT / "README.md", *(ROOT / "docs").rglob("*"), *(ROOT / "cluster").rglob("*"),
             ROOT / "workloads" / "README.md", ROOT / "orchestrator" / "store" / "tracking.py"]
    for path in texts:
        if not path.is_file():
            continue
        for no, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if not MLFLOW_CMD.search(line):
                continue
            seen += 1
            host = HOST.search(line)
            if host and host.group(1) not in LOOPBACK and not re.fullmatch(r"\$\{\w+:-127\.0\.0\.1\}", host.group(1)):
                bad.append(f"{path.relative_to(ROOT)}:{no}: {line.strip()}")
    assert seen >= 2  # the README's and the cluster script's at least
    assert not bad, bad


def _auth_mode_settings_py(path: Path) -> list[tuple[int, object]]:
    """(line, value) of every place Python code sets RAY_AUTH_MODE: env[...] = v, setdefault/putenv("...", v),
    {"RAY_AUTH_MODE": v}, update(RAY_AUTH_MODE=v). Reading it (os.environ.get) is fine."""
    out = []

    def value(node):
        return node.value if isinstance(node, ast.Constant) else ast.unparse(node)

    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Assign):
            for t in node.targets:
                if isinstance(t, ast.Subscript) and isinstance(t.slice, ast.Constant) and t.slice.value == "RAY_AUTH_MODE":
                    out.append((node.lineno, value(node.value)))
        elif isinstance(node, ast.Dict):
            for k, v in zip(node.keys, node.values):
                if isinstance(k, ast.Constant) and k.value == "RAY_AUTH_MODE":
                    out.append((node.lineno, value(v)))
        elif isinstance(node, ast.Call):
            args = node.args
            if len(args) >= 2 and isinstance(args[0], ast.Constant) and args[0].value == "RAY_AUTH_MODE" and \
                    isinstance(node.func, ast.Attribute) and node.func.attr in ("setdefault", "putenv", "__setitem__"):
                out.append((node.lineno, value(args[1])))
            out += [(node.lineno, value(k.value)) for k in node.keywords if k.arg == "RAY_AUTH_MODE"]
    return out


def test_ray_token_auth_is_never_switched_off():
    """No code, script or manifest of the project sets RAY_AUTH_MODE to anything but token (reading the user's own
    setting, and prose about it, is fine); importing svgap's modules leaves the user's setting alone."""
    bad = []
    for path in _files("*.py"):
        bad += [f"{path.relative_to(ROOT)}:{no}: RAY_AUTH_MODE -> {v}" for no, v in _auth_mode_settings_py(path)
                if v != "token"]
    shell = re.compile(r"RAY_AUTH_MODE=[\"']?([^\s\"';]+)|name:\s*RAY_AUTH_MODE\s*\n\s*value:\s*[\"']?(\w+)")
    for path in _files("*.sh", "*.yaml", "*.yml", dirs=CODE_DIRS + ("configs",)) + [ROOT / "Makefile"]:
        text = "\n".join(l for l in path.read_text(errors="replace").splitlines() if not l.lstrip().startswith("#"))
        for m in shell.finditer(text):
            v = m.group(1) or m.group(2)
            if v.lower() != "token":
                bad.append(f"{path.relative_to(ROOT)}: RAY_AUTH_MODE -> {v}")
    assert not bad, bad
    before = os.environ.get("RAY_AUTH_MODE")
    import orchestrator.cli  # noqa: F401
    import orchestrator.run.experiment  # noqa: F401
    import orchestrator.roles.ray_session  # noqa: F401
    assert os.environ.get("RAY_AUTH_MODE") == before


def test_workloads_load_only_by_registered_name_or_explicit_module_class(tmp_path, monkeypatch):
    """A bare name is looked up in the registry (built-ins, entry points) and never imported as a module; only a
    `module:Class` the user wrote is imported."""
    import workloads
    from orchestrator.config.typed import ConfigError

    marker = tmp_path / "imported"
    (tmp_path / "svgap_probe_mod.py").write_text(f"open({str(marker)!r}, 'w').close()\nclass Thing: pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError, match="unknown workload 'svgap_probe_mod'"):
        workloads.get("svgap_probe_mod")
    assert not marker.exists()
    with pytest.raises(ConfigError, match="does not implement the workload protocol"):
        workloads.get("svgap_probe_mod:Thing")  # explicit: imported, then checked against the protocol
    assert marker.exists()
    sys.modules.pop("svgap_probe_mod", None)


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_run_folders_are_created_with_the_users_umask(tmp_path):
    import numpy as np

    from orchestrator.store.records import PickRow, RoundRecord
    from orchestrator.store.run_store import RunFiles
    from orchestrator.engines.weights import AdapterUpdate, save_update

    old = os.umask(0o027)
    try:
        files = RunFiles(tmp_path / "runs" / "abc")
        files.prepare("rounds: 1\n")
        files.hold()
        files.record(RoundRecord(0, 0, {"U_s": 1.0}, {}, {}))
        files.picks(0, [PickRow(0, "p", "1+1=", "2", False)])
        files.fit(0, {"rate": None})
        save_update(files.root, AdapterUpdate(1, 2.0, {"m": (np.zeros((2, 3)), np.zeros((3, 2)))}))
        files.state(0, 1, "abc")
        files.note_resume({"from_round": 1})
        files.release()
    finally:
        os.umask(old)
    paths = [files.root, *files.root.rglob("*")]
    assert len(paths) >= 12
    for p in paths:
        want = 0o750 if p.is_dir() else 0o640
        assert _mode(p) == want, f"{p.relative_to(tmp_path)}: {oct(_mode(p))} (umask 027 gives {oct(want)})"


def test_secrets_never_reach_the_run_folder(tmp_path, monkeypatch):
    """Ray's and MLflow's tokens from the environment, and a password in a URI, are masked in what a resume writes
    (resumes.jsonl) and in every progress or error line (redact.py; tests/store/test_redaction.py covers params,
    artifacts and config.yaml of a real run)."""
    from orchestrator import redact
    from orchestrator.store import tracking
    from orchestrator.run.resume import ResumePoint
    from orchestrator.store.run_store import RunFiles

    monkeypatch.setenv("RAY_AUTH_TOKEN", "raytok-0123456789abcdef")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "mlpw-0123456789")
    tracking.resolve_uri("http://alice:pw-in-uri-42@127.0.0.1:1")  # remembered as a URI the process uses
    files = RunFiles(tmp_path / "run")
    files.prepare("rounds: 1\n")
    point = ResumePoint("run", files.root, 0, 1, overrides=[
        "resources.timeout_s=60 raytok-0123456789abcdef mlpw-0123456789 http://bob:pw-in-uri-42@h"])
    files.note_resume(point.note())
    line = redact.text("could not reach http://alice:pw-in-uri-42@127.0.0.1:1 with token raytok-0123456789abcdef")
    written = "".join(p.read_text() for p in files.root.rglob("*") if p.is_file())
    for secret in ("raytok-0123456789abcdef", "mlpw-0123456789", "pw-in-uri-42"):
        assert secret not in written and secret not in line, secret
