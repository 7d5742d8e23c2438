"""What the runtime's pieces dying mid-work leaves behind, on the Serve application with real photos:

- a dataset actor killed (``ray.kill``, restart allowed) in the middle of a clustering task: Ray restarts
  it, it frees its dead life's lease and runs the task again from the store, to the very clusters (ids and
  members) an undisturbed run commits;
- the whole application lost with its dataset actor (as in a head restart) and deployed again: the task
  left Running is resumed from the store by the new ingress and ends Succeeded, notified once;
- two clustering requests for one dataset at once: they run one after the other and both succeed;
- an analysis replica killed in the middle of a batch: every photo ends Indexed or Failed with a Reason,
  none stays Pending, and Serve starts a replica in its place.

A clustering run of these photos takes some 50 ms, too short to kill at a chosen moment by polling.
``caught_running`` holds the database's writes (SQLite's write lock; PostgreSQL's lock on the tasks table)
from the moment the actor holds the task, so its next write waits and the kill lands before its commit.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import ray
import redis
from alibabacloud_imm20200930 import models as imm
from harness import sdk_client
from live_immray import BACKENDS, LiveImmray
from live_indexing import batch_index, get_files, index_and_wait, indexing_server, new_dataset, wait_done
from people_photos import COPIES, GROUP, PORTRAITS, make_photos
from people_testkit import TOPIC, all_people, notify, start_clustering, wait_task
from ray import serve
from ray.util.state import list_actors
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

import ray_testkit
from immray.serve.app import APP_NAME, deploy
from immray.services.clustering_task import run_clustering
from immray.settings import NotifyTopic
from immray.store import Dataset, Figure, FigureCluster, Project, Task
from task_testkit import wait_for

CLUSTERED = [copy.name for copy in (*GROUP, *PORTRAITS)]  # six people of the group, one portrait
MIN_FACES = imm.WorkflowParameter(name="FigureClusterMinFaces", value="1")


@dataclass
class Faults:
    live: LiveImmray
    photos: dict[str, Path]  # name -> path; "again/<name>": a second file of the same photo
    stream: str

    @property
    def client(self):
        return self.live.client()


@pytest.fixture(scope="module", params=BACKENDS)
def faults(request, tmp_path_factory, ray_runtime) -> Iterator[Faults]:
    folder = tmp_path_factory.mktemp("photos")
    photos = make_photos(folder)
    (folder / "again").mkdir()
    for name, path in list(photos.items()):
        photos[f"again/{name}"] = Path(shutil.copyfile(path, folder / "again" / name))
    stream = f"immray-faults-{uuid.uuid4().hex[:8]}"
    with (
        indexing_server(
            request,
            tmp_path_factory.mktemp("immray"),
            request.param,
            [folder],
            min_face_px=80,  # the photos' faces are 90 px and more: no upsampling
            task_lease_seconds=2.0,
            task_poll_seconds=0.1,
            notify_poll_seconds=0.05,
            notify_topics={TOPIC: NotifyTopic(url="redis://127.0.0.1:6379/0", stream=stream)},
            # named here, not by serve_app, so that a redeploy keeps the dataset actors' namespace
            ray_namespace=f"immray-test-{uuid.uuid4().hex[:10]}",
        ) as live
    ):
        try:
            yield Faults(live, photos, stream)
        finally:
            redis.Redis().delete(stream)


# --- datasets and their clusters -------------------------------------------------------------------


def indexed_dataset(faults: Faults) -> tuple[str, str, int]:
    """A new dataset with the group and portrait photos indexed; (project, dataset, dataset id)."""
    project, dataset = new_dataset(faults.client, workflow_parameters=[MIN_FACES])
    uris = [faults.photos[name].as_uri() for name in CLUSTERED]
    files = index_and_wait(faults.client, project, dataset, uris)
    assert {file.object_status for file in files.values()} == {"Indexed"}
    with faults.live.db.read() as session:
        key = session.scalar(
            select(Dataset.id).join(Project).where(Project.name == project, Dataset.name == dataset)
        )
    return project, dataset, key


def clusters_of(session, dataset_id: int) -> dict[int, str | None]:
    """Face (Figure row id) -> the ObjectId of its cluster."""
    return dict(
        session.execute(
            select(Figure.id, FigureCluster.object_id)
            .outerjoin(FigureCluster, FigureCluster.id == Figure.cluster_id)
            .where(Figure.dataset_id == dataset_id)
        ).all()
    )


class _RolledBack(Exception):
    pass


class PlannedRun:
    """Stands in for a task's context: the run computes and writes everything, then its transaction is
    rolled back, so what it saw there is what an undisturbed run of the dataset commits."""

    task_id = None

    def __init__(self, dataset_id: int) -> None:
        self.dataset_id = dataset_id
        self.written: dict[int, str | None] = {}
        self.result: dict[str, Any] = {}

    def progress(self, percent: float) -> None:
        pass

    def finish(self, session, result=None) -> None:
        self.written, self.result = clusters_of(session, self.dataset_id), dict(result or {})
        raise _RolledBack


def undisturbed(faults: Faults, dataset_id: int) -> PlannedRun:
    run = PlannedRun(dataset_id)
    with pytest.raises(_RolledBack):
        run_clustering(faults.live.db, run, dataset_id)
    assert len(set(run.written.values()) - {None}) == 7, "six people of the group, one portrait"
    return run


def assert_committed(faults: Faults, project: str, dataset: str, dataset_id: int, planned: PlannedRun):
    with faults.live.db.read() as session:
        assert clusters_of(session, dataset_id) == planned.written, "the same faces in the same clusters"
    people = all_people(faults.client, project, dataset)
    assert {person.object_id for person in people} == set(planned.written.values()) - {None}


def task_row(faults: Faults, task_id: str) -> Task:
    with faults.live.db.read() as session:
        row = session.scalars(select(Task).where(Task.task_id == task_id)).one()
        session.expunge(row)
        return row


# --- catching a task while its actor runs it ---------------------------------------------------------


@contextlib.contextmanager
def _hold_sqlite(faults: Faults, task_id: str, timeout: float) -> Iterator[tuple[str, str, int]]:
    connection = sqlite3.connect(faults.live.db.engine.url.database, timeout=0, isolation_level=None)
    query = "SELECT status, lease_owner, progress FROM tasks WHERE task_id = ?"
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                connection.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError:  # a writer holds the lock now
                assert time.monotonic() < deadline, "the database stayed locked"
                time.sleep(0.0005)
                continue
            status, owner, progress = connection.execute(query, (task_id,)).fetchone()
            if status == "Running" and owner is not None:
                try:
                    yield status, owner, progress
                finally:
                    connection.execute("ROLLBACK")
                return
            connection.execute("ROLLBACK")
            assert status == "Running", f"task {task_id} ended ({status}) before its actor was caught"
            assert time.monotonic() < deadline, f"no actor took task {task_id}"
            time.sleep(0.001)  # a gap for the other writers
    finally:
        connection.close()


@contextlib.contextmanager
def _hold_postgresql(faults: Faults, task_id: str, timeout: float) -> Iterator[tuple[str, str, int]]:
    query = select(Task.status, Task.lease_owner, Task.progress).where(Task.task_id == task_id)
    deadline = time.monotonic() + timeout
    with faults.live.db.engine.connect() as connection:
        while True:
            transaction = connection.begin()
            try:
                connection.exec_driver_sql("LOCK TABLE tasks IN EXCLUSIVE MODE NOWAIT")
            except OperationalError:  # a writer holds a row of it now
                transaction.rollback()
                assert time.monotonic() < deadline, "the tasks table stayed locked"
                time.sleep(0.0005)
                continue
            status, owner, progress = connection.execute(query).one()
            if status == "Running" and owner is not None:
                try:
                    yield status, owner, progress
                finally:
                    transaction.rollback()
                return
            transaction.rollback()
            assert status == "Running", f"task {task_id} ended ({status}) before its actor was caught"
            assert time.monotonic() < deadline, f"no actor took task {task_id}"
            time.sleep(0.001)


def caught_running(faults: Faults, task_id: str, timeout: float = 60.0):
    """Enters with (status, lease owner, progress) of ``task_id`` once a runner holds it; until the block
    ends no write reaches the database, so the runner waits at its next write and cannot end the task."""
    hold = _hold_sqlite if faults.live.backend == "sqlite" else _hold_postgresql
    return hold(faults, task_id, timeout)


def pid_gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")  # exited, not reaped yet
    except FileNotFoundError:
        return True


def the_dataset_actor(faults: Faults, project: str, dataset: str):
    """The dataset's live actor, as Ray's state API shows it (restarts included). The state API answers
    from what the GCS last heard, so on a loaded machine a running actor may show a moment late: asked again
    for a few seconds."""
    deadline = time.monotonic() + 15
    while True:
        found = [
            actor
            for actor in list_actors(
                address=ray_testkit.start_ray().gcs_address,
                filters=[("ray_namespace", "=", faults.live.settings.ray_namespace), ("state", "=", "ALIVE")],
                detail=True,
            )
            if (actor.name or "").startswith(f"dataset:{project}/{dataset}#")
        ]
        if len(found) == 1 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert len(found) == 1, found
    return found[0]


def kill(actor, *, no_restart: bool) -> None:
    """``ray.kill`` an actor of the state API and wait until its process is gone."""
    ray.kill(ray.get_actor(actor.name, namespace=actor.ray_namespace), no_restart=no_restart)
    wait_for(f"{actor.name} (pid {actor.pid}) to die", lambda: pid_gone(actor.pid))


def notified(faults: Faults, task_id: str) -> list[tuple[str, str, str]]:
    """(TaskId, Status, UserData) of the task's messages in the Redis stream, once one arrived."""

    def messages() -> list[tuple[str, str, str]]:
        contents = [json.loads(fields[b"content"]) for _, fields in redis.Redis().xrange(faults.stream)]
        return [(c["TaskId"], c["Status"], c["UserData"]) for c in contents if c.get("TaskId") == task_id]

    return wait_for(f"the notification of {task_id}", messages)


# --- the tests ------------------------------------------------------------------------------------------


def test_a_dataset_actor_killed_mid_clustering_restarts_and_commits_the_same_clusters(faults):
    project, dataset, key = indexed_dataset(faults)
    planned = undisturbed(faults, key)
    task_id = start_clustering(faults.client, project, dataset, notification=notify(), user_data="again")
    with caught_running(faults, task_id) as (_, owner, progress):
        actor = the_dataset_actor(faults, project, dataset)
        assert owner.startswith("ray:") and actor.name in owner and progress < 100
        kill(actor, no_restart=False)  # Ray may restart it
    task = wait_task(faults.client, project, task_id)
    assert (task.status, task.progress) == ("Succeeded", 100), (task.code, task.message)
    row = task_row(faults, task_id)
    assert (row.attempts, row.lease_owner, row.result) == (2, None, planned.result)  # the cut run counted
    assert_committed(faults, project, dataset, key, planned)
    again = the_dataset_actor(faults, project, dataset)
    assert (again.actor_id, again.num_restarts) == (actor.actor_id, actor.num_restarts + 1)
    assert again.pid != actor.pid
    assert notified(faults, task_id) == [(task_id, "Succeeded", "again")]  # once: the cut run sent nothing


@pytest.mark.parametrize("faults", ["sqlite"], indirect=True)
def test_a_task_left_by_a_lost_application_resumes_when_it_is_deployed_again(faults):
    """As after a head restart: the application and the dataset actor die at once (no graceful stop, no
    restart); the application deployed again finds the task Running in the store and runs it again.
    On SQLite only, to spare the suite a redeploy: the store's part (a dead lease expires, the task is
    claimed again) is the first test's and test_task_worker's, on both backends."""
    project, dataset, key = indexed_dataset(faults)
    planned = undisturbed(faults, key)
    task_id = start_clustering(faults.client, project, dataset, notification=notify(), user_data="resume")
    with caught_running(faults, task_id):
        victims = [the_dataset_actor(faults, project, dataset)]
        serve.delete(APP_NAME, _blocking=False)  # nothing brings its replicas back...
        victims += ray_testkit.replica_actors("Ingress") + ray_testkit.replica_actors("FaceAnalysis")
        for actor in victims:  # ...and none of them stops gracefully
            kill(actor, no_restart=True)
    wait_for("the application to be gone", lambda: APP_NAME not in serve.status().applications, 60)
    row = task_row(faults, task_id)
    assert (row.status, row.attempts, row.lease_owner is not None) == ("Running", 1, True)

    deploy(ray_testkit.suite_config(faults.live.settings))
    task = wait_task(faults.client, project, task_id)
    assert (task.status, task.progress) == ("Succeeded", 100), (task.code, task.message)
    assert task_row(faults, task_id).attempts == 2
    assert_committed(faults, project, dataset, key, planned)
    assert notified(faults, task_id) == [(task_id, "Succeeded", "resume")]


def test_two_clustering_requests_at_once_run_one_after_the_other(faults):
    """IMM's StartTime is when a task was created (both at once here), so their runs are seen in the task
    rows (a lease, or progress, while Running) and in what each run found to do."""
    project, dataset, key = indexed_dataset(faults)
    planned = undisturbed(faults, key)
    barrier = threading.Barrier(2)
    task_ids: list[str] = []

    def request() -> None:
        client = sdk_client(faults.live.address, faults.live.admin.access_key_id, faults.live.admin.secret)
        barrier.wait()
        task_ids.append(start_clustering(client, project, dataset))

    # Snapshots of both tasks, one transaction each: never two of them running at once.
    snapshots: list[list[tuple[str, bool, int]]] = []
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            with faults.live.db.read() as session:
                rows = session.execute(
                    select(Task.status, Task.lease_owner.is_not(None), Task.progress)
                    .where(Task.dataset_id == key)
                    .order_by(Task.id)
                ).all()
            snapshots.append([tuple(row) for row in rows])
            time.sleep(0.002)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    threads = [threading.Thread(target=request) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    try:
        assert len(task_ids) == 2
        tasks = {task_id: wait_task(faults.client, project, task_id) for task_id in task_ids}
    finally:
        done.set()
        watcher.join(10)
    assert [task.status for task in tasks.values()] == ["Succeeded", "Succeeded"]
    with faults.live.db.read() as session:
        older, newer = session.scalars(select(Task).where(Task.dataset_id == key).order_by(Task.id)).all()
    # The older one clustered every face; the newer one started after its commit and found nothing new
    # (run side by side, the later commit would have met the state saved by the other and failed).
    assert older.result == planned.result and older.result["ClustersCreated"] == 7
    assert (newer.result["ClustersCreated"], newer.result["FacesAssigned"]) == (0, 0)
    assert older.end_time <= newer.end_time
    running = [
        [
            i
            for i, (status, leased, progress) in enumerate(snapshot)
            if status == "Running" and (leased or progress)
        ]
        for snapshot in snapshots
    ]
    assert all(len(now) <= 1 for now in running), "both tasks ran at once"
    assert_committed(faults, project, dataset, key, planned)


@pytest.mark.parametrize("faults", ["sqlite"], indirect=True)
def test_an_analysis_replica_killed_mid_batch_leaves_no_photo_pending(faults):
    """On SQLite only: what the store does with the photos (Indexed, or Failed with a Reason) is the
    indexing tests' on both backends; what is tested here is Serve's and the ingress's."""
    client = faults.client
    project, dataset = new_dataset(client)
    names = sorted(name for name in faults.photos if name.rsplit("/", 1)[-1] in COPIES)
    assert len(names) == 20
    uris = [faults.photos[name].as_uri() for name in names]
    replicas = wait_for(
        "two analysis replicas", lambda: len(r := ray_testkit.replica_actors("FaceAnalysis")) == 2 and r
    )
    batch_index(client, project, dataset, uris)
    statuses = wait_for(
        "the first photo analysed",
        lambda: (
            "Indexed" in (s := [f.object_status for f in get_files(client, project, dataset, uris).values()])
            and s
        ),
        every=0.02,
    )
    assert "Pending" in statuses, "the batch ended before a replica could be killed"
    victim = replicas[0]
    kill(victim, no_restart=True)  # Serve replaces it

    files = wait_done(client, project, dataset, uris)
    outcomes = {file.object_status for file in files.values()}
    assert outcomes <= {"Indexed", "Failed"}
    assert all(file.reason for file in files.values() if file.object_status == "Failed")
    by_name = dict(zip(names, uris, strict=True))
    for name in COPIES:  # a photo analysed twice (two files) has the same faces both times
        first, second = files[by_name[name]], files[by_name[f"again/{name}"]]
        if first.object_status == second.object_status == "Indexed":
            assert first.figure_count == second.figure_count > 0, name

    back = wait_for(
        "Serve to replace the replica",
        lambda: (
            len(r := ray_testkit.replica_actors("FaceAnalysis")) == 2
            and victim.actor_id not in {a.actor_id for a in r}
            and r
        ),
        120,
    )
    assert len(back) == 2
    project, dataset = new_dataset(client)
    portrait = faults.photos["portrait-medium.jpg"].as_uri()
    after = index_and_wait(client, project, dataset, [portrait])[portrait]
    assert (after.object_status, after.figure_count) == ("Indexed", 1)
