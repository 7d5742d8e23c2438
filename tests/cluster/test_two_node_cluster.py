"""immray on a real two-node Ray cluster on this host, built as the README's "Run it on a Ray cluster" says:
``deploy/trial/cluster.sh up`` (a Ray head, a Ray worker node with its own resources and temp dir, PostgreSQL,
the session's Milvus server, ``serve deploy configs/serve.cluster.yaml``), then the official SDK against its
endpoint, ``immray backfill`` with the exports of ``cluster.sh env``, and the worker node killed (its raylet
and every process under it, SIGKILL) in the middle of analysis and of a clustering task, then started again;
last, the head killed the same way and the whole cluster started again (``cluster.sh restart``).

The head is given no CPU, so every replica (ingress and analysis) and every dataset actor runs on the worker
node, and killing it takes all of them: the head keeps Ray's GCS, Serve's controller and its HTTP proxy,
PostgreSQL and Milvus keep the record, and everything must come back from them when the node does."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from alibabacloud_imm20200930 import models as imm
from alibabacloud_imm20200930.client import Client
from harness import sdk_client
from live_indexing import batch_index, get_files, new_dataset, wait_done
from people_photos import GROUP, PORTRAITS, make_photos
from people_testkit import all_people, cluster, faces, start_clustering, wait_task

from photo_testkit import TEST_DETECTOR

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

REPO = Path(__file__).resolve().parents[2]
TRIAL = REPO / "deploy" / "trial" / "cluster.sh"
ENDPOINT = "127.0.0.1:8000"  # http_options.port of configs/serve.cluster.yaml
RAY_PORT = 6390
UP_SECONDS = 600
JOB_SECONDS = 420
RECOVERY_SECONDS = 300  # a new worker node: its replicas placed, the models loaded, the work sent again
NAMES = [copy.name for copy in (*GROUP, *PORTRAITS)]
COPIES = 4  # each photo under this many names, so that analysis is still under way when the node dies


@dataclass
class Trial:
    directory: Path
    env: dict[str, str]  # cluster.sh's settings
    exports: dict[str, str]  # what `cluster.sh env` exports: immray's commands pointed at the cluster
    key_id: str
    secret: str
    photos: dict[str, Path]
    root: Path  # the folder the cluster may read (--root)

    def client(self) -> Client:
        return sdk_client(ENDPOINT, self.key_id, self.secret, read_timeout=120_000, connect_timeout=10_000)

    def uris(self, names: list[str]) -> list[str]:
        return [self.photos[name].as_uri() for name in names]

    def script(self, *args: str, timeout: float = UP_SECONDS) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(TRIAL), *args], env=self.env, capture_output=True, text=True, timeout=timeout
        )

    def immray(self, *args: str, timeout: float = JOB_SECONDS) -> subprocess.CompletedProcess:
        env = {**os.environ, **self.exports}
        command = [str(Path(sys.executable).parent / "immray"), *args]
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)


def _exports(text: str) -> dict[str, str]:
    found = {}
    for line in text.splitlines():
        match = re.fullmatch(r"export (\w+)=(.*)", line.strip())
        if match and match.group(1) != "PATH":
            found[match.group(1)] = match.group(2).strip("'\"")
    return found


@pytest.fixture(scope="module")
def trial(tmp_path_factory, new_postgres_database, milvus_server_uri) -> Iterator[Trial]:  # noqa: F811
    photos_dir = tmp_path_factory.mktemp("cluster-photos")
    made = make_photos(photos_dir / "source", NAMES)
    photos: dict[str, Path] = {}
    for name, path in made.items():  # the same photo under several names (a library's duplicates)
        for n in range(COPIES):
            copy = photos_dir / f"{n}-{name}"
            copy.write_bytes(path.read_bytes())
            photos[f"{n}-{name}"] = copy
    # short: a Ray node's socket paths under its temp dir must stay within AF_UNIX's 107 bytes
    directory = Path(tempfile.mkdtemp(prefix="immray-trial-", dir="/tmp"))
    env = {
        **os.environ,
        "TRIAL_DIR": str(directory),
        "VENV": str(Path(sys.executable).parent.parent),
        "TRIAL_RAY_PORT": str(RAY_PORT),
        "TRIAL_DASHBOARD_PORT": str(RAY_PORT + 1),
        "TRIAL_HEAD_CPUS": "0",  # everything of immray on the worker node (above)
        "IMMRAY_DATABASE_URL": new_postgres_database(),
        "IMMRAY_MILVUS_URI": milvus_server_uri,
        "IMMRAY_DETECTOR": TEST_DETECTOR,  # the suite's detector (photo_testkit says why); nodes inherit it
    }
    up = subprocess.run(
        [str(TRIAL), "up", "--root", str(photos_dir)],
        env=env,
        capture_output=True,
        text=True,
        timeout=UP_SECONDS,
    )
    try:
        assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
        key_id = re.search(r"AccessKeyId:\s+(\S+)", up.stdout).group(1)
        secret = re.search(r"AccessKeySecret:\s+(\S+)", up.stdout).group(1)
        exports = _exports(
            subprocess.run([str(TRIAL), "env"], env=env, capture_output=True, text=True).stdout
        )
        found = Trial(directory, env, exports, key_id, secret, photos, photos_dir)
        _wait_serving(found)
        yield found
    finally:
        subprocess.run([str(TRIAL), "down"], env=env, capture_output=True, timeout=120)
        if not os.environ.get("IMMRAY_TEST_KEEP_TRIAL"):  # set it to read the nodes' logs afterwards
            shutil.rmtree(directory, ignore_errors=True)


def _wait_serving(trial: Trial) -> None:
    """Until the application answers (serve deploy returns before its replicas are up)."""
    deadline = time.monotonic() + UP_SECONDS
    while True:
        try:
            trial.client().list_projects(imm.ListProjectsRequest())
            return
        except Exception as exc:
            assert time.monotonic() < deadline, f"the cluster's endpoint never answered: {exc}"
            time.sleep(2)


def _processes() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, command line) of every process, read from /proc."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            stat = (entry / "stat").read_text()
        except OSError:  # gone meanwhile
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        found[int(entry.name)] = (parent, cmdline)
    return found


def worker_node_processes(trial: Trial, node: str = "ray-worker") -> dict[int, str]:
    """pid -> command line of the worker node's processes (or the head's: ``node="ray-head"``): those naming
    its temp dir (its raylet, log monitor; the head's GCS) and every process under them (its workers: the
    analysis replicas, the dataset actors, on the head Serve's controller and proxy; its agents)."""
    marker = str(trial.directory / node)
    processes = _processes()
    chosen = {pid for pid, (_, cmdline) in processes.items() if marker in cmdline}
    grew = True
    while grew:
        below = {pid for pid, (parent, _) in processes.items() if parent in chosen} - chosen
        chosen |= below
        grew = bool(below)
    return {pid: processes[pid][1] for pid in chosen}


def kill_worker_node(trial: Trial, node: str = "ray-worker") -> None:
    processes = worker_node_processes(trial, node)
    assert any("raylet" in cmdline for cmdline in processes.values()), f"no raylet of {node} found"
    for pid in processes:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while set(processes) & set(_processes()) and time.monotonic() < deadline:
        time.sleep(0.2)


def restart_worker_node(trial: Trial) -> None:
    started = trial.script("worker")
    assert started.returncode == 0, started.stdout[-2000:] + started.stderr[-2000:]


def eventually(call, timeout: float = RECOVERY_SECONDS):
    """``call()``'s value once it stops raising: while the node's replicas come back, the endpoint answers
    errors (Serve's proxy on the head has no replica to send to)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return call()
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(2)


def placement(
    client: Client, project: str, dataset: str, uris: list[str]
) -> set[frozenset[tuple[str, int, int]]]:
    """The people as sets of faces, each face named by its photo's name and its box's corner: comparable
    between two datasets of the same photos (their ids differ)."""
    people: dict[str, set[tuple[str, int, int]]] = {}
    for uri, figures in faces(client, project, dataset, uris).items():
        for figure in figures:
            name = uri.rsplit("/", 1)[1].split("-", 1)[1]  # "<n>-group.jpg" -> "group.jpg"
            people.setdefault(figure.figure_cluster_id, set()).add(
                (name, figure.boundary.left, figure.boundary.top)
            )
    return {frozenset(found) for cluster_id, found in people.items() if not cluster_id.startswith("figure-")}


@pytest.fixture(scope="module")
def undisturbed(trial: Trial) -> dict:
    """The SDK story on the cluster: index, cluster, name a person, index more, cluster again."""
    client = trial.client()
    project, dataset = new_dataset(client)
    first = trial.uris([f"0-{copy.name}" for copy in GROUP])
    later = trial.uris([f"0-{copy.name}" for copy in PORTRAITS])
    batch_index(client, project, dataset, first)
    files = wait_done(client, project, dataset, first)
    assert all(file.object_status == "Indexed" for file in files.values()), files
    cluster(client, project, dataset)
    people = all_people(client, project, dataset)
    assert len(people) == 6  # the six people of the group photo, four faces each
    named = max(people, key=lambda p: p.face_count).object_id
    client.update_figure_cluster(
        imm.UpdateFigureClusterRequest(
            project_name=project,
            dataset_name=dataset,
            figure_cluster=imm.FigureClusterForReq(object_id=named, name="Grandma"),
        )
    )
    batch_index(client, project, dataset, later)
    assert all(f.object_status == "Indexed" for f in wait_done(client, project, dataset, later).values())
    cluster(client, project, dataset)
    # indexed now, clustered later with the node killed: after a node's loss the one analysis replica
    # has minutes of photos sent again to work through, which would hold up photos indexed then
    to_cluster = new_dataset(client)
    uris = trial.uris([f"2-{name}" for name in NAMES])
    batch_index(client, *to_cluster, uris)
    assert all(f.object_status == "Indexed" for f in wait_done(client, *to_cluster, uris).values())
    return {
        "project": project,
        "dataset": dataset,
        "uris": first + later,
        "named": named,
        "to_cluster": (*to_cluster, uris),
    }


def test_the_sdk_story_runs_on_the_cluster(trial, undisturbed):
    client = trial.client()
    project, dataset = undisturbed["project"], undisturbed["dataset"]
    people = {p.object_id: p for p in all_people(client, project, dataset)}
    assert len(people) == 7  # the portrait's person joined
    assert people[undisturbed["named"]].name == "Grandma"  # kept by the next task, same id
    # the dataset's actor is seen by `immray status` against the cluster's dashboard
    status = trial.immray(
        "status", "--json", "--address", trial.exports["RAY_API_SERVER_ADDRESS"], timeout=120
    )
    assert status.returncode == 0, status.stderr[-2000:]
    assert f"{project}/{dataset}" in status.stdout


def test_a_backfill_job_indexes_a_folder_and_a_second_one_skips_it(trial, undisturbed):
    folder = trial.root / "backfill"  # under the cluster's --root: its nodes may read it
    folder.mkdir()
    names = [f"1-{copy.name}" for copy in (*GROUP, *PORTRAITS)]
    for name in names:
        (folder / name).write_bytes(trial.photos[name].read_bytes())
    first = trial.immray("backfill", str(folder), "--dataset", "backfill/family", "--follow")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert "done: 8/8 files (8 indexed, 0 failed" in first.stdout, first.stdout[-2000:]
    client = trial.client()
    uris = [(folder / name).as_uri() for name in names]
    files = get_files(client, "backfill", "family", uris)
    assert {f.object_status for f in files.values()} == {"Indexed"}
    # stored as the API stores them: the same faces as the SDK story's copies of the same photos
    story = faces(client, undisturbed["project"], undisturbed["dataset"], undisturbed["uris"])
    by_name = {uri.rsplit("/", 1)[1].split("-", 1)[1]: figures for uri, figures in story.items()}
    for uri, file in files.items():
        name = uri.rsplit("/", 1)[1].split("-", 1)[1]
        assert sorted((f.boundary.left, f.boundary.top) for f in file.figures) == sorted(
            (f.boundary.left, f.boundary.top) for f in by_name[name]
        )
    assert len(all_people(client, "backfill", "family")) == 7  # its clustering task ran at the end
    again = trial.immray("backfill", str(folder), "--dataset", "backfill/family", "--follow")
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "done: 0/0 files (0 indexed, 0 failed, 8 unchanged)" in again.stdout, again.stdout[-2000:]
    listed = trial.immray("backfill", "--list")
    assert listed.returncode == 0 and listed.stdout.count("backfill/family") == 2, listed.stdout


def test_a_worker_node_killed_during_analysis_loses_no_photo(trial, undisturbed):
    client = trial.client()
    project, dataset = new_dataset(client)
    names = [f"{n}-{name}" for n in range(COPIES) for name in NAMES]
    uris = trial.uris(names)
    batch_index(client, project, dataset, uris)
    deadline = time.monotonic() + 120
    while True:  # until the analysis is under way
        statuses = [f.object_status for f in get_files(client, project, dataset, uris).values()]
        if "Indexed" in statuses:
            break
        assert time.monotonic() < deadline, "no photo was analysed"
        time.sleep(0.2)
    kill_worker_node(trial)
    assert "Pending" in statuses, "every photo was done before the node died: nothing was tested"
    restart_worker_node(trial)
    files = eventually(lambda: wait_done(trial.client(), project, dataset, uris))
    assert {f.object_status for f in files.values()} == {"Indexed"}, {
        u: f.reason for u, f in files.items() if f.object_status != "Indexed"
    }
    # each photo's faces stored once: as many as the undisturbed run found in the same photo
    story = faces(client, undisturbed["project"], undisturbed["dataset"], undisturbed["uris"])
    count = {uri.rsplit("/", 1)[1].split("-", 1)[1]: len(figures) for uri, figures in story.items()}
    for uri, file in files.items():
        ids = [f.figure_id for f in file.figures]
        assert len(ids) == len(set(ids)) == count[uri.rsplit("/", 1)[1].split("-", 1)[1]], uri
    # and their vectors: a face whose vector write died with the node (after its SQL commit) is written by
    # the next clustering task; after it, no drift between the store and Milvus
    assert wait_task(client, project, start_clustering(client, project, dataset)).status == "Succeeded"
    check = trial.immray("vectors", "check", timeout=180)
    assert check.returncode == 0, check.stdout[-2000:] + check.stderr[-2000:]


def test_a_worker_node_killed_during_clustering_gives_the_undisturbed_clusters(trial, undisturbed):
    client = trial.client()
    project, dataset, uris = undisturbed["to_cluster"]
    task_id = start_clustering(client, project, dataset)
    kill_worker_node(trial)  # the dataset's actor is there, made for this task or already running it
    restart_worker_node(trial)
    done = eventually(lambda: wait_task(trial.client(), project, task_id))
    assert done.status == "Succeeded", done
    expected = placement(client, undisturbed["project"], undisturbed["dataset"], undisturbed["uris"])
    assert placement(client, project, dataset, uris) == expected


def test_a_restarted_head_resumes_every_unfinished_file_and_task(trial, undisturbed):
    """Last in the module: the head's loss ends the whole cluster (no GCS fault tolerance here), which
    `cluster.sh restart` starts again with a fresh Serve application on the same store and Milvus."""
    client = trial.client()
    to_cluster = new_dataset(client)
    clustered = trial.uris([f"3-{name}" for name in NAMES])
    batch_index(client, *to_cluster, clustered)
    assert all(f.object_status == "Indexed" for f in wait_done(client, *to_cluster, clustered).values())
    project, dataset = new_dataset(client)
    uris = trial.uris([f"{n}-{name}" for n in range(COPIES) for name in NAMES])
    batch_index(client, project, dataset, uris)
    deadline = time.monotonic() + 120
    while True:  # until the analysis is under way
        statuses = [f.object_status for f in get_files(client, project, dataset, uris).values()]
        if "Indexed" in statuses:
            break
        assert time.monotonic() < deadline, "no photo was analysed"
        time.sleep(0.2)
    task_id = start_clustering(client, *to_cluster[:2])
    kill_worker_node(trial, "ray-head")
    assert "Pending" in statuses, "every photo was done before the head died: nothing was tested"
    restarted = trial.script("restart")
    assert restarted.returncode == 0, restarted.stdout[-2000:] + restarted.stderr[-2000:]
    files = eventually(lambda: wait_done(trial.client(), project, dataset, uris))
    assert {f.object_status for f in files.values()} == {"Indexed"}, {
        u: f.reason for u, f in files.items() if f.object_status != "Indexed"
    }
    story = faces(client, undisturbed["project"], undisturbed["dataset"], undisturbed["uris"])
    count = {uri.rsplit("/", 1)[1].split("-", 1)[1]: len(figures) for uri, figures in story.items()}
    for uri, file in files.items():  # each photo's faces stored once
        ids = [f.figure_id for f in file.figures]
        assert len(ids) == len(set(ids)) == count[uri.rsplit("/", 1)[1].split("-", 1)[1]], uri
    done = eventually(lambda: wait_task(trial.client(), to_cluster[0], task_id))
    assert done.status == "Succeeded", done
    expected = placement(client, undisturbed["project"], undisturbed["dataset"], undisturbed["uris"])
    assert placement(trial.client(), *to_cluster, clustered) == expected
    # a vector write cut by the head's loss is repaired by the next task (as above)
    assert wait_task(client, project, start_clustering(client, project, dataset)).status == "Succeeded"
    check = trial.immray("vectors", "check", timeout=180)
    assert check.returncode == 0, check.stdout[-2000:] + check.stderr[-2000:]
