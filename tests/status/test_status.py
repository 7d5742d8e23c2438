"""``immray status`` reads Ray (its state API, Serve's status, the dataset actors themselves) and the store.

With a live server on the session's Ray: the command, run as its own process as an operator runs it, joins
the cluster by its GCS address (or reads it through the dashboard's URL) and shows the Serve application's
replicas, the dataset actor a clustering task made and what it runs, and the files pending in the store.
With no Ray at the address: the store's part still shows, with a one-line reason and exit code 1.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
import ray
from alibabacloud_imm20200930 import models as imm
from click.testing import CliRunner
from live_immray import BACKENDS, Key, LiveImmray, database_url_for, unique
from sqlalchemy import select, update

from immray.cli import main
from immray.policy import ADMIN_POLICY
from immray.serve.app import load_config
from immray.services import access_keys
from immray.services.clustering_task import create_clustering_task
from immray.services.database import Database
from immray.settings import Settings, get_settings
from immray.store import Dataset, File, Project, Task, utcnow
from ray_testkit import dataset_actors, serve_app, start_ray
from task_testkit import add_dataset, wait_for

IMMRAY = str(Path(sys.executable).with_name("immray"))
RAY_ENV = ("RAY_ADDRESS", "IMMRAY_RAY_ADDRESS", "RAY_API_SERVER_ADDRESS")


def immray_status(database_url: str, data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``immray status ARGS`` as its own process (a Ray driver of its own), on the given database."""
    env = {name: value for name, value in os.environ.items() if name not in RAY_ENV}
    env["IMMRAY_DATABASE_URL"] = database_url
    return subprocess.run(
        [IMMRAY, "status", "--data-dir", str(data_dir), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def add_pending_files(db: Database, dataset_id: int, count: int) -> None:
    """File rows whose analysis nobody was asked for: they stay Pending (the ingress re-sends Pending files
    only when it starts)."""
    with db.write() as session:
        session.add_all(File(dataset_id=dataset_id, uri=f"file:///nowhere/{i}.jpg") for i in range(count))


# --- with a live server ---------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=BACKENDS)
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveImmray]:
    """The whole server with a Ray namespace of its own (the status is asked for it by name), its idle
    dataset actors kept for the module."""
    data_dir = tmp_path_factory.mktemp("status")
    url = database_url_for(request, request.param, data_dir)
    settings = Settings(
        data_dir=data_dir,
        database_url=url,
        ray_namespace=f"immray-status-{uuid.uuid4().hex[:10]}",
        dataset_actor_idle_seconds=3600,
    )
    db = Database.connect(url, migrate=True)
    admin = access_keys.create_key(db, ADMIN_POLICY, is_admin=True)
    try:
        with serve_app(settings) as address:
            yield LiveImmray(address, settings, db, Key(admin.info.access_key_id, admin.secret))
    finally:
        db.close()


@dataclass(frozen=True)
class Clustered:
    project: str
    dataset: str
    actor: str  # the dataset actor's name


@pytest.fixture(scope="module")
def clustered(server: LiveImmray) -> Clustered:
    """A dataset clustered through the SDK (which made its actor), now idle, and two files of it Pending."""
    client = server.client()
    project, dataset = unique("p"), unique("d")
    client.create_project(imm.CreateProjectRequest(project_name=project))
    client.create_dataset(imm.CreateDatasetRequest(project_name=project, dataset_name=dataset))
    task_id = client.create_figure_clustering_task(
        imm.CreateFigureClusteringTaskRequest(project_name=project, dataset_name=dataset)
    ).body.task_id

    def ended() -> str | None:
        task_type = task_id.rsplit("-", 5)[0]
        request = imm.GetTaskRequest(project_name=project, task_type=task_type, task_id=task_id)
        found = client.get_task(request).body
        return None if found.status == "Running" else found.status

    assert wait_for(f"task {task_id} to end", ended, timeout=120) == "Succeeded"
    namespace = server.settings.ray_namespace
    prefix = f"dataset:{project}/{dataset}#"
    actor = wait_for(
        "the dataset's actor",
        lambda: next((a.name for a in dataset_actors(namespace) if a.name.startswith(prefix)), None),
    )
    handle = ray.get_actor(actor, namespace=namespace)

    def idle() -> bool:
        answer = ray.get(handle.status.remote(), timeout=30)
        return not answer["running"] and not answer["queued"]

    wait_for("the actor to be idle", idle)
    add_pending_files(server.db, dataset_id(server.db, project, dataset), 2)
    return Clustered(project, dataset, actor)


def dataset_id(db: Database, project: str, dataset: str) -> int:
    with db.read() as session:
        return session.execute(
            select(Dataset.id).join(Project).where(Project.name == project, Dataset.name == dataset)
        ).scalar_one()


def configured_replicas() -> dict[str, int]:
    """Replicas per deployment of configs/serve.local.yaml (what the tests deploy)."""
    (app,) = load_config()["applications"]
    return {deployment["name"]: deployment["num_replicas"] for deployment in app["deployments"]}


def test_status_joins_the_cluster_and_shows_the_application_the_actors_and_the_store(server, clustered):
    runtime = start_ray()
    namespace = server.settings.ray_namespace
    result = immray_status(
        server.settings.resolved_database_url,
        server.settings.data_dir,
        "--json",
        "--address",
        runtime.gcs_address,
        "--namespace",
        namespace,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    found = json.loads(result.stdout)
    cluster = found["ray"]
    assert (cluster["address"], cluster["nodes_alive"], cluster["cpus"], cluster["gpus"]) == (
        runtime.gcs_address,
        1,
        2,
        0,
    )
    assert 0 <= cluster["cpus_available"] <= 2 and cluster["gpus_available"] == 0
    (app,) = [app for app in found["serve_apps"] if app["name"] == "immray"]
    assert app["status"] == "RUNNING"
    assert {d["name"]: (d["status"], d["replicas"]) for d in app["deployments"]} == {
        name: ("HEALTHY", {"RUNNING": replicas}) for name, replicas in configured_replicas().items()
    }
    assert found["namespace"] == namespace and found["actors_asked"] is True
    (actor,) = found["dataset_actors"]
    assert (actor["name"], actor["state"], actor["running"], actor["queued"], actor["error"]) == (
        clustered.actor,
        "ALIVE",
        [],
        [],
        None,
    )
    assert actor["node"] == ray.util.get_node_ip_address() and actor["restarts"] == 0
    assert (found["running_tasks"], found["waiting_tasks"]) == ([], [])
    assert found["pending_files"] == [
        {"project": clustered.project, "dataset": clustered.dataset, "files": 2}
    ]
    assert (found["ray_error"], found["serve_error"], found["store_error"]) == (None, None, None)


def test_status_as_text_in_a_process_already_on_ray(server, clustered):
    """The command in this process, which is a driver of the session's Ray already: it uses that
    connection."""
    runtime = start_ray()
    env = {
        "IMMRAY_DATABASE_URL": server.settings.resolved_database_url,
        "IMMRAY_RAY_NAMESPACE": server.settings.ray_namespace,
    }
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(
            main,
            ["status", "--data-dir", str(server.settings.data_dir), "--address", runtime.gcs_address],
            env=env,
        )
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith(f"Ray at {runtime.gcs_address}: 1 node(s) alive, CPUs 2 (")
    assert lines[0].endswith("GPUs 0 (0 available)")
    deployments = {f"  {name}: HEALTHY, replicas {n} RUNNING" for name, n in configured_replicas().items()}
    assert lines[1] == "Serve application immray: RUNNING"
    assert set(lines[2 : 2 + len(deployments)]) == deployments
    assert lines[2 + len(deployments) :] == [
        f"Dataset actors (namespace {server.settings.ray_namespace}): 1",
        f"  {clustered.actor}  ALIVE  on {ray.util.get_node_ip_address()}  idle",
        "Tasks: 0 running, 0 waiting",
        "Files pending analysis: 2",
        f"  {clustered.project}/{clustered.dataset}: 2",
    ]


def test_status_through_the_dashboard_url_lists_the_actors_without_asking_them(server, clustered):
    runtime = start_ray()
    url = runtime.dashboard_url if "://" in runtime.dashboard_url else f"http://{runtime.dashboard_url}"
    result = immray_status(
        server.settings.resolved_database_url,
        server.settings.data_dir,
        "--json",
        "--address",
        url,
        "--namespace",
        server.settings.ray_namespace,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    found = json.loads(result.stdout)
    cluster = found["ray"]
    assert (cluster["address"], cluster["nodes_alive"], cluster["cpus"], cluster["cpus_available"]) == (
        url,
        1,
        2,
        None,
    )
    assert found["serve_error"] is None, found["serve_error"]
    (app,) = [app for app in found["serve_apps"] if app["name"] == "immray"]
    assert {d["name"]: (d["status"], d["replicas"]) for d in app["deployments"]} == {
        name: ("HEALTHY", {"RUNNING": replicas}) for name, replicas in configured_replicas().items()
    }
    (actor,) = found["dataset_actors"]
    assert (actor["name"], actor["state"], actor["running"], actor["queued"]) == (
        clustered.actor,
        "ALIVE",
        None,
        None,
    )
    assert found["actors_asked"] is False
    assert found["pending_files"] == [
        {"project": clustered.project, "dataset": clustered.dataset, "files": 2}
    ]


# --- with no Ray ------------------------------------------------------------------------------------------


def test_without_ray_the_store_is_shown_and_the_exit_code_is_1(db_url: str, tmp_path: Path):
    """No Ray listens at the address: one line says so (no traceback, no minutes of Ray's retries) and the
    store's part follows: a task holding a live lease, one whose lease expired, one waiting, files pending."""
    db = Database.connect(db_url)
    try:
        ds1 = add_dataset(db, "proj", "ds1")
        add_dataset(db, "proj", "ds2")
        holding = create_clustering_task(db, "proj", "ds1")  # no job backend here: they wait in the table
        expired = create_clustering_task(db, "proj", "ds2")
        waiting = create_clustering_task(db, "proj", "ds1")
        now = utcnow()
        with db.write() as session:
            for task, owner, until, attempts, progress in (
                (holding, "ray:gcs/immray/dataset:proj/ds1#1#a", now + timedelta(hours=1), 1, 40),
                (expired, "ray:gcs/immray/dataset:proj/ds2#2#b", now - timedelta(minutes=1), 2, 10),
            ):
                session.execute(
                    update(Task)
                    .where(Task.task_id == task.task_id)
                    .values(lease_owner=owner, lease_expires_at=until, attempts=attempts, progress=progress)
                )
        add_pending_files(db, ds1, 3)
    finally:
        db.close()
    address = f"127.0.0.1:{closed_port()}"

    text = immray_status(db_url, tmp_path, "--address", address)
    assert text.returncode == 1, text.stdout + text.stderr
    assert "Traceback" not in text.stdout + text.stderr
    lines = text.stdout.splitlines()
    assert lines[0].startswith(f"Ray unreachable: nothing answers at {address}")
    assert lines[1:] == [
        "Tasks: 2 running, 1 waiting",
        f"  {holding.task_id}  proj/ds1  40%  attempt 1  on ray:gcs/immray/dataset:proj/ds1#1#a",
        f"  {expired.task_id}  proj/ds2  10%  attempt 2  on ray:gcs/immray/dataset:proj/ds2#2#b"
        " (lease expired: its runner is gone; the sweeper sends it again)",
        f"  {waiting.task_id}  proj/ds1  waiting  (0 run(s) cut short)",
        "Files pending analysis: 3",
        "  proj/ds1: 3",
    ]

    as_json = immray_status(db_url, tmp_path, "--json", "--address", address)
    assert as_json.returncode == 1, as_json.stdout + as_json.stderr
    found = json.loads(as_json.stdout)
    assert found["ray"] is None and found["ray_error"].startswith(f"nothing answers at {address}")
    assert [(t["task_id"], t["lease_expired"]) for t in found["running_tasks"]] == [
        (holding.task_id, False),
        (expired.task_id, True),
    ]
    assert [t["task_id"] for t in found["waiting_tasks"]] == [waiting.task_id]
    assert found["pending_files"] == [{"project": "proj", "dataset": "ds1", "files": 3}]
    assert found["store_error"] is None
