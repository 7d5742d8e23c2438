"""The scale-out mode end to end, once on Redis and once on RabbitMQ: the real server sends jobs through the
broker to two `immray worker` processes, on the real PostgreSQL, driven through the official SDK.

- the story of API part 2 (index real photos, from a shared file:// root and from S3; cluster; query);
- a worker SIGKILLed in the middle of a photo's analysis, and in the middle of a clustering task: the work
  ends on the other worker, stored once, and the task ends Succeeded;
- two clustering requests for one dataset, taken by the two workers at once, run one after the other.

The workers are shared by the tests of this module (a killed one is started again by the next test).
"""

from __future__ import annotations

import hashlib
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import httpx
import pytest
from alibabacloud_imm20200930 import models as imm
from people_photos import COPIES, GROUP, PORTRAITS, centre, make_photos, who
from prometheus_client.parser import text_string_to_metric_families
from scaleout_testkit import BROKERS, Deployment, deployment, wait_for
from sqlalchemy import func, select

from immray.jobs.celery_status import gather_status
from immray.store import Dataset, Figure, File, Task
from s3_testkit import bucket_settings, moto_server, s3_client

pytestmark = pytest.mark.postgres

GROUP_NAMES = [copy.name for copy in GROUP]
PORTRAIT_NAMES = [copy.name for copy in PORTRAITS]
WORKERS = ("w1", "w2")


class Photos:
    def __init__(self, paths: dict[str, Path], bucket: str) -> None:
        self.paths = paths
        self.bucket = bucket
        self.name_of_digest = {hashlib.sha256(path.read_bytes()).hexdigest(): n for n, path in paths.items()}

    def file_uri(self, name: str) -> str:
        return self.paths[name].as_uri()

    def s3_uri(self, name: str) -> str:
        return f"s3://{self.bucket}/{name}"


@pytest.fixture(scope="session")
def s3_url() -> Iterator[str]:
    with moto_server() as url:
        yield url


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory, s3_url: str) -> Photos:
    paths = make_photos(tmp_path_factory.mktemp("photos"))
    bucket = f"photos-{uuid.uuid4().hex[:8]}"
    s3 = s3_client(s3_url)
    s3.create_bucket(Bucket=bucket)
    for name in PORTRAIT_NAMES:
        s3.put_object(Bucket=bucket, Key=name, Body=paths[name].read_bytes())
    return Photos(paths, bucket)


@pytest.fixture(scope="module", params=list(BROKERS))
def scaleout(
    request: pytest.FixtureRequest,
    new_tasks_postgres_database,  # first: without PostgreSQL the module is skipped before anything starts
    photos: Photos,
    s3_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Deployment]:
    folder = next(iter(photos.paths.values())).parent
    with deployment(
        request.param,
        new_tasks_postgres_database(),
        tmp_path_factory.mktemp(f"scaleout-{request.param}"),
        folder,
        buckets={photos.bucket: bucket_settings(s3_url)},
    ) as found:
        yield found


@pytest.fixture
def live(scaleout: Deployment) -> Iterator[Deployment]:
    """The module's deployment with both workers running, idle and taking every kind of job."""
    scaleout.clear_holds()
    scaleout.ensure_workers(*WORKERS)
    yield scaleout
    scaleout.clear_holds()


# --- helpers -------------------------------------------------------------------------------------------


def metric(text: str, name: str, **labels: str) -> float:
    """The sum of the samples ``name`` with ``labels`` in a Prometheus text page."""
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def worker_totals(live: Deployment, name: str, **labels: str) -> float:
    return sum(metric(worker.metrics(), name, **labels) for worker in live.workers.values())


def person_of_each_face(live: Deployment, project: str, dataset: str, uris: dict[str, str]) -> dict[str, str]:
    """FigureId -> person, from geometry (the group photo's faces name the group's six people)."""
    files = live.files(project, dataset, list(uris.values()))
    reference = [(f.figure_id, centre(f.boundary)) for f in files[uris["group.jpg"]].figures]
    people = {}
    for name, uri in uris.items():
        for figure in files[uri].figures:
            source = COPIES[name].source
            people[figure.figure_id] = who(name, figure.boundary, reference) if source == "group" else source
    return people


def clusters_by_person(
    live: Deployment, project: str, dataset: str, uris: dict[str, str]
) -> dict[str, dict[str, int]]:
    """Person -> {cluster id: faces}, over every face of ``uris``."""
    identity = person_of_each_face(live, project, dataset, uris)
    found: dict[str, dict[str, int]] = defaultdict(Counter)
    for file in live.files(project, dataset, list(uris.values())).values():
        for figure in file.figures:
            found[identity[figure.figure_id]][figure.figure_cluster_id] += 1
    return found


def in_dataset(dataset: str, uris) -> list:
    """The files of ``dataset`` with these URIs (dataset names are unique in this test database)."""
    return [
        File.uri.in_(list(uris)),
        File.dataset_id == select(Dataset.id).where(Dataset.name == dataset).scalar_subquery(),
    ]


def outcomes(records, key: str, value: object) -> list[str]:
    """The outcomes of the runs of one task or file in ``records()``, once one of them succeeded (a
    worker logs a run right after its commit, so the log may lag the API by a moment)."""
    return wait_for(
        f"a successful run of {value} in the logs",
        lambda: (
            (found := [r["outcome"] for r in jobs_of(records(), key, value)])
            and "succeeded" in found
            and found
        ),
        timeout=30,
    )


def jobs_of(worker_records: list[dict], key: str, value: object) -> list[dict]:
    return [record for record in worker_records if record.get(key) == value]


def started(record: dict) -> float:
    return datetime.fromisoformat(record["time"]).timestamp() - record["seconds"]


# --- the story ---------------------------------------------------------------------------------------


def test_index_cluster_query_on_two_workers(live: Deployment, photos: Photos):
    project, dataset = live.new_dataset()
    uris = {name: photos.file_uri(name) for name in GROUP_NAMES} | {
        name: photos.s3_uri(name)
        for name in PORTRAIT_NAMES  # workers read these through S3
    }
    before = {
        "analysed": worker_totals(live, "immray_photos_analyzed_total", result="analysed"),
        "faces": worker_totals(live, "immray_faces_found_total"),
    }
    live.index(project, dataset, list(uris.values()))
    files = live.wait_indexed(project, dataset, list(uris.values()))
    assert sum(files[uris[name]].figure_count for name in GROUP_NAMES) == 24  # six people, four times each
    assert [files[uris[name]].figure_count for name in PORTRAIT_NAMES] == [1, 1, 1]
    with live.db.read() as session:
        file_ids = set(session.scalars(select(File.id).where(*in_dataset(dataset, uris.values()))))
    analysed_by = {r["worker"] for r in live.all_jobs("index-file") if r.get("file_id") in file_ids}
    assert len(analysed_by) == 2, f"the photos were shared by the two worker processes: {analysed_by}"

    task_id = live.start_clustering(project, dataset)
    task = live.wait_task(project, task_id)
    assert (task.status, task.progress) == ("Succeeded", 100), (task.code, task.message)
    assert outcomes(lambda: live.all_jobs("face-clustering"), "task_id", task_id) == ["succeeded"]

    people = live.people(project, dataset)
    assert len(people) == 7
    by_person = clusters_by_person(live, project, dataset, uris)
    assert all(len(clusters) == 1 for clusters in by_person.values()), by_person
    assert len({cluster for clusters in by_person.values() for cluster in clusters}) == 7
    counts = {person.object_id: person.face_count for person in people}
    portrait_cluster = next(iter(by_person.pop("portrait")))
    assert counts.pop(portrait_cluster) == 3
    assert sorted(counts.values()) == [4] * 6
    photos_of_portrait = live.client.simple_query(
        imm.SimpleQueryRequest(
            project_name=project,
            dataset_name=dataset,
            query=imm.SimpleQuery(field="Figures.FigureClusterId", operation="eq", value=portrait_cluster),
        )
    ).body.files
    assert sorted(file.uri for file in photos_of_portrait) == sorted(photos.s3_uri(n) for n in PORTRAIT_NAMES)

    # Metrics: each worker serves the sum of its processes; the server counts the API's requests.
    analysed = worker_totals(live, "immray_photos_analyzed_total", result="analysed") - before["analysed"]
    faces = worker_totals(live, "immray_faces_found_total") - before["faces"]
    assert analysed >= 8 and faces >= 27  # more only if a slow analysis was delivered twice
    assert worker_totals(live, "immray_jobs_total", job="face-clustering", outcome="succeeded") >= 1
    server = httpx.get(f"http://{live.address}/metrics", timeout=10).text
    assert (
        metric(server, "immray_api_requests_total", action="CreateFigureClusteringTask", status="200") >= 1
    )

    status = gather_status(live.settings, live.db, timeout=3)
    assert status.mode == "scale-out" and status.broker_error is None
    assert {worker.node for worker in live.workers.values()} <= {seen.name for seen in status.workers}
    assert set(status.queues) == {f"{live.settings.broker_namespace}.{kind}" for kind in ("tasks", "jobs")}
    assert status.running_tasks == []


# --- killed workers ------------------------------------------------------------------------------------


def test_a_worker_killed_mid_analysis_leaves_its_photo_to_the_other(live: Deployment, photos: Photos):
    project, dataset = live.new_dataset()
    names = ["group.jpg", "group-small.jpg", "portrait-large.jpg", "portrait-medium.jpg"]
    uris = {name: photos.file_uri(name) for name in names}
    live.hold("w1", "analysis")
    live.index(project, dataset, list(uris.values()))
    holding = wait_for("w1 to be analysing a photo", lambda: live.holding("w1", "analysis"))
    held = photos.name_of_digest[holding["sha256"]]
    live.kill("w1")

    files = live.wait_indexed(project, dataset, list(uris.values()))
    assert {name: files[uri].figure_count for name, uri in uris.items()} == {
        "group.jpg": 6,
        "group-small.jpg": 6,
        "portrait-large.jpg": 1,
        "portrait-medium.jpg": 1,
    }
    with live.db.read() as session:
        rows = session.execute(
            select(File.id, File.uri, File.attempts).where(*in_dataset(dataset, uris.values()))
        ).all()
        ids = {uri: file_id for file_id, uri, _ in rows}
        attempts = {uri: count for _, uri, count in rows}
        stored = Counter(
            session.scalars(select(Figure.file_id).where(Figure.file_id.in_(ids.values()))).all()
        )
        tombstones = session.scalar(
            select(func.count(Figure.id)).where(
                Figure.file_id.in_(ids.values()), Figure.deleted_at.is_not(None)
            )
        )
    # Each photo's faces are stored once, none replaced: the killed run committed nothing.
    assert {uri: stored[ids[uri]] for uri in uris.values()} == {
        uri: files[uri].figure_count for uri in uris.values()
    }
    assert tombstones == 0
    assert attempts[uris[held]] >= 2, "the held photo was taken again after the kill"
    # Another worker process analysed the photo w1 was killed over.
    runs = outcomes(lambda: live.all_jobs("index-file"), "file_id", ids[uris[held]])
    assert set(runs) == {"succeeded"}, "the killed run logged nothing; the one that took over succeeded"
    assert holding["pid"] not in {
        r["process"] for r in live.all_jobs("index-file") if r.get("file_id") == ids[uris[held]]
    }


def test_a_worker_killed_mid_clustering_leaves_the_task_to_the_other(live: Deployment, photos: Photos):
    project, dataset = live.new_dataset(min_faces=2)
    first = {name: photos.file_uri(name) for name in ("group.jpg", "group-mirrored.jpg")}
    later = {name: photos.s3_uri(name) for name in PORTRAIT_NAMES}
    live.index(project, dataset, list(first.values()))
    live.wait_indexed(project, dataset, list(first.values()))
    live.consume_tasks("w2", False)  # w1 runs the first task and saves the dataset's clustering state
    try:
        one = live.start_clustering(project, dataset)
        assert live.wait_task(project, one).status == "Succeeded"
        assert outcomes(live.workers["w1"].jobs, "task_id", one) == ["succeeded"]
        before = {person.object_id: person.face_count for person in live.people(project, dataset)}
        assert sorted(before.values()) == [2] * 6

        live.index(project, dataset, list(later.values()))
        live.wait_indexed(project, dataset, list(later.values()))
        live.hold("w1", "clustering")
        two = live.start_clustering(project, dataset)
        holding = wait_for("w1 to be clustering", lambda: live.holding("w1", "clustering"))
        assert holding["task_id"] == two
    finally:
        live.consume_tasks("w2", True)
    live.kill("w1")

    task = live.wait_task(project, two)
    assert (task.status, task.progress) == ("Succeeded", 100), (task.code, task.message)
    with live.db.read() as session:
        attempts, result = session.execute(
            select(Task.attempts, Task.result).where(Task.task_id == two)
        ).one()
    assert attempts == 2
    assert outcomes(lambda: live.all_jobs("face-clustering"), "task_id", two).count("succeeded") == 1
    runs = [r for r in live.all_jobs("face-clustering") if r.get("task_id") == two]
    assert holding["pid"] not in {r["process"] for r in runs if r["outcome"] == "succeeded"}
    # Another worker went on from the state w1 saved: the six people keep their clusters, the portrait is new.
    assert (result["ClustersCreated"], result["FacesAssigned"]) == (1, 3)
    people = {person.object_id: person.face_count for person in live.people(project, dataset)}
    assert {cluster: people[cluster] for cluster in before} == before
    assert sorted(people.values()) == [2] * 6 + [3]
    by_person = clusters_by_person(live, project, dataset, first | later)
    assert all(len(clusters) == 1 for clusters in by_person.values()), by_person
    assert sum(sum(clusters.values()) for clusters in by_person.values()) == 15


# --- one clustering task per dataset at a time ------------------------------------------------------------


def test_two_clustering_requests_taken_by_two_workers_run_one_after_the_other(
    live: Deployment, photos: Photos
):
    project, dataset = live.new_dataset(min_faces=2)
    uris = {name: photos.file_uri(name) for name in ("group.jpg", "group-mirrored.jpg")}
    live.index(project, dataset, list(uris.values()))
    live.wait_indexed(project, dataset, list(uris.values()))
    for name in WORKERS:
        live.hold(name, "clustering")
    first = live.start_clustering(project, dataset)
    second = live.start_clustering(project, dataset)

    holder = wait_for(
        "a worker to be clustering",
        lambda: next((name for name in WORKERS if live.holding(name, "clustering")), None),
    )
    other = next(name for name in WORKERS if name != holder)
    assert live.holding(holder, "clustering")["task_id"] == first
    # The other worker was handed the second request meanwhile, and left it waiting.
    refused = wait_for(
        f"{other} to be handed the second task",
        lambda: jobs_of(live.workers[other].jobs("face-clustering"), "task_id", second),
    )
    assert [r["outcome"] for r in refused] == ["skipped"]
    with live.db.read() as session:
        waiting = session.execute(
            select(Task.lease_owner, Task.progress, Task.attempts).where(Task.task_id == second)
        ).one()
    assert tuple(waiting) == (None, 0, 0)
    assert live.holding(other, "clustering") is None

    for name in WORKERS:
        live.release(name, "clustering")
    assert live.wait_task(project, first).status == "Succeeded"
    assert live.wait_task(project, second).status == "Succeeded"

    def succeeded_runs() -> tuple[list[dict], list[dict]] | None:  # logged just after the commit
        runs = [r for r in live.all_jobs("face-clustering") if r.get("outcome") == "succeeded"]
        found = jobs_of(runs, "task_id", first), jobs_of(runs, "task_id", second)
        return found if all(found) else None

    one, two = wait_for("both runs in the workers' logs", succeeded_runs, timeout=30)
    assert len(one) == len(two) == 1
    with live.db.read() as session:
        rows = session.execute(
            select(Task.task_id, Task.result, Task.end_time).where(Task.task_id.in_([first, second]))
        )
        results, end_times = {}, {}
        for task_id, result, end_time in rows:
            results[task_id], end_times[task_id] = result, end_time.timestamp()
    assert started(two[0]) >= end_times[first], "the second task's run began after the first had ended"
    # The second ran on what the first committed: nothing was left for it to do.
    assert (results[first]["ClustersCreated"], results[first]["FacesAssigned"]) == (6, 12)
    assert (results[second]["ClustersCreated"], results[second]["FacesAssigned"]) == (0, 0)
