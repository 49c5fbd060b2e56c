"""cluster/: the `ray up` config passes Ray's own autoscaler validator, the KubeRay manifests carry what KubeRay
requires (and token auth from a Secret in every Ray container), the node types advertise the custom resources the
cluster config's pools ask for, local.sh refuses bad arguments, and cluster/README.md covers every file. No Ray
processes start here (the local cluster is exercised in test_cluster_local.py)."""
from __future__ import annotations

import copy
import json
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CLUSTER = ROOT / "cluster"


def _load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def _validated(cfg: dict) -> dict:
    """What `ray up` does to a config before it starts anything: fill the provider's defaults, then validate."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    full = prepare_config(copy.deepcopy(cfg))
    validate_config(full)
    return full


def test_ray_up_config_passes_rays_validator():
    cfg = _load(CLUSTER / "ray-cluster.yaml")
    full = _validated(cfg)
    types = full["available_node_types"]
    assert full["head_node_type"] == "head" and types["head"]["resources"] == {"CPU": 0}
    assert types["gen_gpu"]["resources"].get("gen_node", 0) > 0
    assert types["train_gpu"]["resources"].get("train_node", 0) > 0
    # token auth on every node, with the token where Ray's loader looks for it
    starts = full["head_start_ray_commands"] + full["worker_start_ray_commands"]
    assert all("RAY_AUTH_MODE=token" in c for c in starts if "ray start" in c)
    assert any(dst.endswith(".ray/auth_token") for dst in full["file_mounts"])
    assert not any("ray stop" in c for c in starts)


def test_ray_validator_is_real_it_rejects_a_misspelt_key():
    import jsonschema

    cfg = _load(CLUSTER / "ray-cluster.yaml")
    cfg["available_node_types"]["gen_gpu"]["resourcez"] = {"gen_node": 1}
    with pytest.raises(jsonschema.ValidationError, match="resourcez"):
        _validated(cfg)


def _containers(pod_template: dict) -> list[dict]:
    return pod_template["spec"]["containers"]


def _check_ray_cluster_spec(spec: dict) -> set[str]:
    """Fields KubeRay's RayCluster CRD requires (ray.io/v1: headGroupSpec.{rayStartParams, template}; each worker
    group groupName, minReplicas, maxReplicas, rayStartParams, template) and token auth in every container.
    Returns the custom resources the worker groups advertise."""
    head = spec["headGroupSpec"]
    assert isinstance(head["rayStartParams"], dict) and head["template"]
    version = spec["rayVersion"]
    custom: set[str] = set()
    groups = [("head", head)] + [(g["groupName"], g) for g in spec["workerGroupSpecs"]]
    for name, group in groups:
        assert all(isinstance(v, str) for v in group["rayStartParams"].values()), name  # a map of strings
        for c in _containers(group["template"]):
            assert c["name"] and c["image"], name
            assert version in c["image"].replace("ray", ""), f"{name}: image {c['image']} vs rayVersion {version}"
            _check_token_env(c, name)
        if name == "head":
            continue
        assert 0 <= group["minReplicas"] <= group.get("replicas", group["minReplicas"]) <= group["maxReplicas"], name
        res = group["rayStartParams"].get("resources")
        if res:  # KubeRay passes it to `ray start --resources`: a quoted JSON object
            custom |= set(json.loads(json.loads(res)))
    return custom


def _check_token_env(container: dict, where: str) -> None:
    env = {e["name"]: e for e in container.get("env", [])}
    assert env["RAY_AUTH_MODE"]["value"] == "token", where
    ref = env["RAY_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"]
    assert ref == {"name": "svgap-ray-token", "key": "auth_token"}, where


def _pool_custom(config: Path) -> set[str]:
    from orchestrator.config import load

    r = load(config).resources
    return {k for p in (r.generation, r.verification, r.training) for k in p.custom}


def test_kuberay_raycluster_manifest():
    doc = _load(CLUSTER / "kuberay" / "raycluster.yaml")
    assert doc["apiVersion"] == "ray.io/v1" and doc["kind"] == "RayCluster" and doc["metadata"]["name"]
    custom = _check_ray_cluster_spec(doc["spec"])
    assert _pool_custom(ROOT / "configs" / "cluster-gpu.yaml") <= custom
    assert doc["spec"]["headGroupSpec"]["rayStartParams"]["dashboard-host"] == "0.0.0.0"


def test_kuberay_rayjob_manifest_runs_svgap_with_token_auth():
    doc = _load(CLUSTER / "kuberay" / "rayjob.yaml")
    assert doc["apiVersion"] == "ray.io/v1" and doc["kind"] == "RayJob" and doc["metadata"]["name"]
    spec = doc["spec"]
    assert spec["entrypoint"].startswith("svgap run ") and "--address auto" in spec["entrypoint"]
    runtime_env = yaml.safe_load(spec["runtimeEnvYAML"])
    assert runtime_env["env_vars"]["MLFLOW_TRACKING_URI"].startswith("http")
    _check_ray_cluster_spec(spec["rayClusterSpec"])
    for c in _containers(spec["submitterPodTemplate"]):  # the submitter runs `ray job submit`: it needs the token
        _check_token_env(c, "submitter")
    # the entrypoint's --set overrides are valid svgap config
    from orchestrator.config import load

    sets = spec["entrypoint"].split("--set")[1:]
    load(None, [s.strip() for s in sets])


def test_ray_up_node_types_serve_the_gpu_config():
    types = _load(CLUSTER / "ray-cluster.yaml")["available_node_types"]
    advertised = {k for t in types.values() for k in t.get("resources", {})}
    assert _pool_custom(ROOT / "configs" / "cluster-gpu.yaml") <= advertised


@pytest.mark.parametrize("args, needle", [
    (["bogus"], "usage"),
    (["up", "--workers", "x"], "--workers: expected a whole number"),
    (["up", "--frobnicate"], "unknown option --frobnicate"),
    (["up", "--dir", "/tmp/" + "d" * 60], "too long for Ray's socket paths"),
])
def test_local_sh_refuses_bad_arguments(args, needle, tmp_path):
    proc = subprocess.run(["bash", str(CLUSTER / "local.sh"), *args], capture_output=True, text=True, timeout=30,
                          env={"PATH": "/usr/bin:/bin", "SVGAP_CLUSTER_DIR": str(tmp_path / "c")})
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""  # stdout is for eval: nothing but export lines, ever
    assert needle in proc.stderr


def test_local_sh_parses_and_down_without_a_cluster_is_one_line(tmp_path):
    assert subprocess.run(["bash", "-n", str(CLUSTER / "local.sh")]).returncode == 0
    proc = subprocess.run(["bash", str(CLUSTER / "local.sh"), "status"], capture_output=True, text=True, timeout=30,
                          env={"PATH": "/usr/bin:/bin", "SVGAP_CLUSTER_DIR": str(tmp_path / "c")})
    assert proc.returncode == 3 and "not up" in proc.stderr


def test_cluster_readme_covers_every_file():
    text = (CLUSTER / "README.md").read_text()
    files = [p.relative_to(CLUSTER).as_posix() for p in CLUSTER.rglob("*") if p.is_file() and p.name != "README.md"]
    assert files
    for f in files:
        assert f in text, f"cluster/README.md does not mention {f}"
