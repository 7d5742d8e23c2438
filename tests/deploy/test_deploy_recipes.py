"""The deploy recipes agree with the code and with each other: both Serve configs pass Ray's own Serve
schema and build the application they name; the KubeRay manifest serves configs/serve.cluster.yaml
verbatim, with its secrets and a GPU group; the image recipe installs the package from pyproject.toml with
its weights and starts a valid command; the trial cluster script's plan is a two-node cluster beside,
not on, Redis' port."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import ray
import yaml
from click.testing import CliRunner
from ray.serve._private.build_app import build_app
from ray.serve.schema import ServeDeploySchema

from immray.cli import main
from immray.serve.app import APP_NAME, build

REPO = Path(__file__).resolve().parents[2]
CONFIGS = {name: REPO / "configs" / f"serve.{name}.yaml" for name in ("local", "cluster")}
MANIFEST = REPO / "deploy" / "kuberay" / "rayservice.yaml"
DOCKERFILE = REPO / "deploy" / "docker" / "Dockerfile"
TRIAL = REPO / "deploy" / "trial" / "cluster.sh"
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_each_config_passes_serves_schema_and_builds_its_application(name):
    schema = ServeDeploySchema.model_validate(load(CONFIGS[name]))
    (app,) = schema.applications
    assert (app.name, app.import_path, app.route_prefix) == (APP_NAME, "immray.serve.app:build", "/")
    built = build_app(build(app.args), name=app.name)
    assert built.ingress_deployment_name == "Ingress"
    assert (
        {d.name for d in app.deployments}
        == {d.name for d in built.deployments}
        == {"Ingress", "FaceAnalysis"}
    )


def test_the_cluster_config_scales_analysis_on_gpus_and_the_ingress_out():
    local, cluster = (ServeDeploySchema.model_validate(load(CONFIGS[n])) for n in ("local", "cluster"))
    deployments = {d.name: d for d in cluster.applications[0].deployments}
    analysis, ingress = deployments["FaceAnalysis"], deployments["Ingress"]
    assert analysis.ray_actor_options.num_gpus == 1
    scaling = analysis.autoscaling_config
    scaling = scaling if isinstance(scaling, dict) else scaling.model_dump()
    assert 1 <= scaling["min_replicas"] < scaling["max_replicas"]
    assert analysis.user_config["max_batch_size"] > 8
    assert ingress.num_replicas >= 2
    assert cluster.proxy_location == "EveryNode" and cluster.http_options.host == "0.0.0.0"
    # The same proxy behaviour as the embedded default (IMM's errors, 64 KiB request lines).
    assert cluster.controller_options == local.controller_options
    # No secret in the file: the nodes' environment carries them.
    env = cluster.applications[0].runtime_env.get("env_vars", {})
    assert not {"IMMRAY_DATABASE_URL", "IMMRAY_MILVUS_URI"} & set(env)


def manifest_docs() -> dict[str, dict]:
    return {doc["kind"]: doc for doc in yaml.safe_load_all(MANIFEST.read_text()) if doc}


def test_the_rayservice_serves_the_cluster_config_verbatim():
    service = manifest_docs()["RayService"]
    assert yaml.safe_load(service["spec"]["serveConfigV2"]) == load(CONFIGS["cluster"])


def test_the_rayservice_cluster_has_its_groups_secrets_and_gcs_fault_tolerance():
    docs = manifest_docs()
    secret_keys = set(docs["Secret"]["stringData"])
    cluster = docs["RayService"]["spec"]["rayClusterConfig"]
    assert cluster["rayVersion"] == ray.__version__
    assert cluster["gcsFaultToleranceOptions"]["redisAddress"]
    groups = {"head": cluster["headGroupSpec"]} | {g["groupName"]: g for g in cluster["workerGroupSpecs"]}
    assert set(groups) == {"head", "cpu-workers", "gpu-workers"}
    for name, group in groups.items():
        (container,) = group["template"]["spec"]["containers"]
        env = {item["name"]: item for item in container["env"]}
        for variable in ("IMMRAY_DATABASE_URL", "IMMRAY_MILVUS_URI"):
            ref = env[variable]["valueFrom"]["secretKeyRef"]
            assert ref["name"] == docs["Secret"]["metadata"]["name"] and ref["key"] in secret_keys, name
        gpus = container["resources"]["limits"].get("nvidia.com/gpu")
        assert (gpus is not None) == (name == "gpu-workers"), name
    assert "cuda" in groups["gpu-workers"]["template"]["spec"]["containers"][0]["image"]


def dockerfile() -> str:
    return DOCKERFILE.read_text()


def test_the_image_installs_the_package_from_pyproject_with_torch_from_the_variants_index():
    text = dockerfile()
    assert re.search(r"^ARG BASE=python:3\.1[1-9]", text, re.M) and re.search(
        r"^FROM \$\{BASE\}$", text, re.M
    )
    assert re.search(r"^ARG TORCH_INDEX_URL=https://download\.pytorch\.org/whl/cpu$", text, re.M)
    assert "COPY pyproject.toml" in text and re.search(r"pip install \.( |$)", text, re.M)
    # The sed commands that pick torch's pins out of pyproject.toml find exactly its pins.
    pins = {
        dep for dep in PYPROJECT["project"]["dependencies"] if dep.startswith(("torch==", "torchvision=="))
    }
    commands = re.findall(r'"\$\(sed -n (\'[^\']+\') pyproject.toml\)"', text)
    assert len(commands) == 2
    found = {
        subprocess.run(
            ["bash", "-c", f"sed -n {cmd} pyproject.toml"], cwd=REPO, capture_output=True, text=True
        ).stdout.strip()
        for cmd in commands
    }
    assert found == pins


def test_the_image_carries_the_weights_and_loads_them_at_build():
    text = dockerfile()
    assert re.search(r"^COPY immray \./immray$", text, re.M)
    weights = sorted((REPO / "immray" / "faces" / "weights").glob("*.pt"))
    assert weights, "the package ships its converted weights"
    assert "faces/weights/*.pt" in PYPROJECT["tool"]["setuptools"]["package-data"]["immray"]
    ignore = [
        line.strip() for line in (DOCKERFILE.parent / "Dockerfile.dockerignore").read_text().splitlines()
    ]
    assert "*" in ignore and "!immray/" in ignore
    assert not any("weights" in line or line.endswith(".pt") for line in ignore if not line.startswith("#"))
    assert "get_analyzer()" in text and "HF_HUB_OFFLINE=1" in text


def test_the_images_command_is_a_valid_immray_command():
    cmd = json.loads(re.search(r"^CMD (\[.*\])$", dockerfile(), re.M).group(1))
    assert cmd[0] in PYPROJECT["project"]["scripts"]
    result = CliRunner().invoke(main, [*cmd[1:], "--help"])
    assert result.exit_code == 0, result.output


def trial(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(TRIAL), *args],
        env={**os.environ, "VENV": str(Path(sys.executable).parent.parent), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_trial_script_explains_itself():
    assert subprocess.run(["bash", "-n", str(TRIAL)]).returncode == 0
    shown = trial("--help")
    assert shown.returncode == 0 and "usage: deploy/trial/cluster.sh" in shown.stdout
    unknown = trial("up", "--bogus")
    assert unknown.returncode == 2 and "unknown option: --bogus" in unknown.stderr
    on_redis = trial("up", "--dry-run", TRIAL_RAY_PORT="6379")
    assert on_redis.returncode == 2 and "must not be 6379" in on_redis.stderr


def test_the_trial_plan_is_two_nodes_postgres_milvus_and_the_cluster_config(tmp_path):
    planned = trial("up", "--dry-run", "--root", str(tmp_path), TRIAL_DIR=str(tmp_path / "trial"))
    assert planned.returncode == 0, planned.stderr
    lines = planned.stdout.splitlines()
    starts = [line for line in lines if "/ray start" in line]
    assert len(starts) == 2
    head, worker = starts
    assert "--head" in head and "--port 6380" in head and "--address 127.0.0.1:6380" in worker
    temp_dirs = [re.search(r"--temp-dir (\S+)", line).group(1) for line in starts]
    assert temp_dirs[0] != temp_dirs[1] and all(d.startswith(str(tmp_path / "trial")) for d in temp_dirs)
    assert "--num-gpus" in worker
    for line in starts:  # every Ray process inherits the store, Milvus and roots
        assert "IMMRAY_DATABASE_URL=postgresql+psycopg://" in line and "IMMRAY_MILVUS_URI=http://" in line
    (milvus,) = [line for line in lines if "milvus-server" in line]
    assert Path(milvus.split()[2]).exists()  # the `milvus` package's server, in this environment
    (deploy,) = [line for line in lines if "/serve deploy" in line]
    assert deploy.split("serve deploy ")[1].split()[0] == str(CONFIGS["cluster"])
    assert not (tmp_path / "trial").exists()  # a dry run runs nothing
    exports = trial("env", "--root", str(tmp_path)).stdout
    assert f"IMMRAY_ALLOWED_ROOTS='[\"{tmp_path}\"]'" in exports and "RAY_API_SERVER_ADDRESS=" in exports


def test_the_trial_worker_rejoins_with_the_roots_up_was_given(tmp_path):
    directory = tmp_path / "trial"
    directory.mkdir()
    (directory / "roots").write_text("/mnt/photos\n/mnt/more\n")  # what `up --root ... --root ...` wrote
    planned = trial("worker", "--dry-run", TRIAL_DIR=str(directory))
    assert planned.returncode == 0, planned.stderr
    (start,) = [line for line in planned.stdout.splitlines() if "/ray start" in line]
    assert "--head" not in start and "--address 127.0.0.1:6380" in start
    assert f"--temp-dir {directory}/ray-worker" in start
    (roots,) = re.findall(r"IMMRAY_ALLOWED_ROOTS=(\S+)", start)
    assert json.loads(roots.replace("\\", "")) == ["/mnt/photos", "/mnt/more"]  # printed shell-quoted
