"""A folder bound to a dataset through the SDK: full scan, clustering, then the dataset follows the folder
(new, modified and deleted photos, a text file skipped, a corrupt JPEG failing alone) without re-indexing
what did not change; automatic clustering after a burst; DeleteBinding stops the sync (SQLite and
PostgreSQL, one live server per backend with a one-second listing interval)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from alibabacloud_imm20200930 import models as imm
from binding_kit import (
    clustering_tasks,
    files_of,
    get_binding,
    jpeg,
    truncated_jpeg,
    wait_files,
    wait_for,
    wait_incremental,
)
from live_immray import BACKENDS, LiveImmray, sdk_error
from live_indexing import indexing_server, new_dataset
from people_testkit import all_people, cluster, wait_task
from sqlalchemy import select

from immray.settings import NotifyTopic
from immray.store import File

SCAN_SECONDS = 1.0
TOPIC = "bindings-done"


@pytest.fixture(scope="module", params=BACKENDS)
def server(request, tmp_path_factory) -> Iterator[tuple[LiveImmray, Path, str]]:
    data_dir = tmp_path_factory.mktemp("bindings")
    root = data_dir / "root"
    root.mkdir()
    stream = f"immray-bindings-{uuid.uuid4().hex[:8]}"
    topics = {TOPIC: NotifyTopic(url="redis://127.0.0.1:6379/0", stream=stream)}
    with indexing_server(
        request,
        data_dir,
        request.param,
        [root],
        binding_scan_seconds=SCAN_SECONDS,
        task_poll_seconds=0.1,
        notify_poll_seconds=0.05,
        notify_topics=topics,
    ) as live:
        try:
            yield live, root, stream
        finally:
            redis.Redis().delete(stream)


def task_messages(stream: str) -> dict[str, dict]:
    """TaskId -> content of every task notification in the stream so far."""
    found = {}
    for _, fields in redis.Redis().xrange(stream):
        content = json.loads(fields[b"content"])
        if "TaskId" in content:
            found[content["TaskId"]] = content
    return found


def min_faces(value: int, *more: imm.WorkflowParameter) -> list[imm.WorkflowParameter]:
    return [imm.WorkflowParameter(name="FigureClusterMinFaces", value=str(value)), *more]


def bind(client, project: str, dataset: str, uri: str) -> imm.Binding:
    return client.create_binding(
        imm.CreateBindingRequest(project_name=project, dataset_name=dataset, uri=uri)
    ).body.binding


def event_ids(live: LiveImmray, uris: list[str]) -> dict[str, str]:
    with live.db.read() as session:
        return dict(session.execute(select(File.uri, File.event_id).where(File.uri.in_(uris))).all())


def person_of(file: imm.File) -> str:
    (figure,) = file.figures
    return figure.figure_cluster_id


def test_a_bound_folder_is_followed(server):
    live, root, _ = server
    client = live.client()
    folder = root / "family"
    folder.mkdir()
    names = ["astronaut.jpg", "astronaut_mirrored.jpg", "astronaut_small.jpg", "portrait.jpg"]
    (folder / names[0]).write_bytes(jpeg("astronaut", scale=0.9))
    (folder / names[1]).write_bytes(jpeg("astronaut", mirror=True, scale=0.9))
    (folder / names[2]).write_bytes(jpeg("astronaut", scale=0.8))
    (folder / names[3]).write_bytes(jpeg("portrait", scale=2.0))
    uri_of = {
        name: (folder / name).as_uri()
        for name in [*names, "portrait_mirrored.jpg", "notes.txt", "broken.jpg"]
    }
    project, dataset = new_dataset(client, workflow_parameters=min_faces(2))

    created = bind(client, project, dataset, folder.as_uri())  # no trailing slash: the folder all the same
    assert (created.uri, created.state, created.phase) == (folder.as_uri() + "/", "Ready", "FullScanning")
    assert created.create_time and created.update_time
    binding_uri = created.uri
    assert sdk_error(lambda: bind(client, project, dataset, binding_uri)).code == "ResourceAlreadyExists"
    for refused in (
        "file:///etc/",
        "http://example.com/photos/",
        (folder / "missing").as_uri(),
        "s3://nobucket/x/",
    ):
        error = sdk_error(lambda uri=refused: bind(client, project, dataset, uri))
        assert (error.code, error.status_code) == ("InvalidArgument", 400) and refused[:20] in error.message

    full = wait_incremental(client, project, dataset, binding_uri)
    assert (full.state, full.reason) == ("Running", None)
    first = wait_files(client, project, dataset, [uri_of[name] for name in names])
    assert {uri: (f.object_status, f.figure_count) for uri, f in first.items()} == {
        uri_of[name]: ("Indexed", 1) for name in names
    }
    cluster(client, project, dataset)
    astronaut = person_of(
        files_of(client, project, dataset, [uri_of["astronaut.jpg"]])[uri_of["astronaut.jpg"]]
    )
    assert [(p.object_id, p.face_count) for p in all_people(client, project, dataset)] == [(astronaut, 3)]
    before = event_ids(live, [uri_of["astronaut.jpg"], uri_of["astronaut_mirrored.jpg"]])

    # The folder changes: a new photo, one modified, one deleted, a text file and a corrupt JPEG.
    (folder / "portrait_mirrored.jpg").write_bytes(jpeg("portrait", mirror=True, scale=2.0))
    old_portrait_face = first[uri_of["portrait.jpg"]].figures[0].figure_id
    (folder / "portrait.jpg").write_bytes(jpeg("portrait", scale=2.2))
    (folder / "astronaut_small.jpg").unlink()
    (folder / "notes.txt").write_text("not a photo")
    (folder / "broken.jpg").write_bytes(truncated_jpeg())
    present = [
        uri_of[n]
        for n in (
            "astronaut.jpg",
            "astronaut_mirrored.jpg",
            "portrait.jpg",
            "portrait_mirrored.jpg",
            "broken.jpg",
        )
    ]
    after = wait_files(
        client, project, dataset, present, absent=[uri_of["astronaut_small.jpg"], uri_of["notes.txt"]]
    )
    assert after[uri_of["broken.jpg"]].object_status == "Failed"
    assert after[uri_of["broken.jpg"]].reason.startswith("[InvalidImage]")
    assert after[uri_of["portrait.jpg"]].figures[0].figure_id != old_portrait_face  # re-analysed
    assert event_ids(live, list(before)) == before  # the unchanged photos were not indexed again
    cluster(client, project, dataset)
    people = {p.object_id: p.face_count for p in all_people(client, project, dataset)}
    portrait = person_of(files_of(client, project, dataset, [uri_of["portrait.jpg"]])[uri_of["portrait.jpg"]])
    assert people == {astronaut: 2, portrait: 2}
    assert person_of(after[uri_of["portrait_mirrored.jpg"]]) in (portrait, "figure-cluster-id-unavailable")
    binding = get_binding(client, project, dataset, binding_uri)
    assert (binding.state, binding.phase, binding.reason) == ("Running", "IncrementalScanning", None)

    # DeleteBinding stops the sync and keeps the metadata.
    listed = client.list_bindings(imm.ListBindingsRequest(project_name=project, dataset_name=dataset)).body
    assert [b.uri for b in listed.bindings] == [binding_uri] and not listed.next_token
    client.delete_binding(
        imm.DeleteBindingRequest(project_name=project, dataset_name=dataset, uri=binding_uri)
    )
    assert sdk_error(lambda: get_binding(client, project, dataset, binding_uri)).code == "ResourceNotFound"
    (folder / "later.jpg").write_bytes(jpeg("astronaut", scale=0.9))
    (folder / "astronaut.jpg").unlink()
    time.sleep(3 * SCAN_SECONDS)  # a few listing intervals: a live binding would have acted by now
    kept = files_of(client, project, dataset, [*present, (folder / "later.jpg").as_uri()])
    assert set(kept) == set(present)


def test_bind_limits_and_listing(server):
    live, root, _ = server
    client = live.client()
    folders = [root / f"limit{i}" for i in range(3)]
    for folder in folders:
        folder.mkdir()
    project, dataset = new_dataset(client, dataset_max_bind_count=2)
    for folder in folders[:2]:
        bind(client, project, dataset, folder.as_uri() + "/")
    error = sdk_error(lambda: bind(client, project, dataset, folders[2].as_uri()))
    assert (error.code, error.status_code) == ("LimitExceeded", 400)
    page = client.list_bindings(
        imm.ListBindingsRequest(project_name=project, dataset_name=dataset, max_results=1)
    ).body
    second = client.list_bindings(
        imm.ListBindingsRequest(
            project_name=project, dataset_name=dataset, max_results=1, next_token=page.next_token
        )
    ).body
    assert [b.uri for b in page.bindings + second.bindings] == sorted(f.as_uri() + "/" for f in folders[:2])
    assert not second.next_token
    missing = sdk_error(lambda: get_binding(client, project, dataset, folders[2].as_uri()))
    assert missing.code == "ResourceNotFound"
    assert (
        sdk_error(lambda: get_binding(client, project, "nodataset", folders[0].as_uri())).code
        == "ResourceNotFound"
    )


def test_automatic_clustering_runs_once_after_a_burst(server):
    live, root, stream = server
    client = live.client()
    folder = root / "auto"
    folder.mkdir()
    (folder / "a1.jpg").write_bytes(jpeg("astronaut", scale=0.9))
    (folder / "a2.jpg").write_bytes(jpeg("astronaut", mirror=True, scale=0.9))
    auto = [
        imm.WorkflowParameter(name="AutoClustering", value="true"),
        imm.WorkflowParameter(name="AutoClusteringQuietSeconds", value="2"),
        imm.WorkflowParameter(name="AutoClusteringTopic", value=TOPIC),
    ]
    project, dataset = new_dataset(client, workflow_parameters=min_faces(2, *auto))
    shown = client.get_dataset(imm.GetDatasetRequest(project_name=project, dataset_name=dataset)).body.dataset
    assert {p.name: p.value for p in shown.workflow_parameters}["AutoClustering"] == "true"
    binding_uri = bind(client, project, dataset, folder.as_uri()).uri
    wait_incremental(client, project, dataset, binding_uri)
    first = wait_for("the first automatic task", lambda: clustering_tasks(client, project))
    assert len(first) == 1 and first[0].tags == {"AutoClustering": "true"}
    assert wait_task(client, project, first[0].task_id).status == "Succeeded"
    assert [p.face_count for p in all_people(client, project, dataset)] == [2]

    # A burst of photos: one task once the folder is quiet again, not one per photo.
    for i, (scale, mirror) in enumerate(((0.75, False), (0.8, True), (0.85, False))):
        (folder / f"burst{i}.jpg").write_bytes(jpeg("astronaut", scale=scale, mirror=mirror))
    wait_for("a second automatic task", lambda: len(clustering_tasks(client, project)) >= 2)
    tasks = clustering_tasks(client, project)
    assert len(tasks) == 2
    assert {wait_task(client, project, task.task_id).status for task in tasks} == {"Succeeded"}
    assert [p.face_count for p in all_people(client, project, dataset)] == [5]
    assert len(clustering_tasks(client, project)) == 2
    messages = wait_for("both notifications", lambda: (m := task_messages(stream)) and len(m) >= 2 and m)
    assert {task_id: (m["TaskType"], m["Status"]) for task_id, m in messages.items()} == {
        task.task_id: ("FaceClustering", "Succeeded") for task in tasks
    }


def test_a_folder_that_goes_away_is_retried(server):
    live, root, _ = server
    client = live.client()
    folder = root / "removable"
    folder.mkdir()
    project, dataset = new_dataset(client)
    uri = bind(client, project, dataset, folder.as_uri()).uri

    def state(expected: str):
        return lambda: (b := get_binding(client, project, dataset, uri)).state == expected and b

    wait_for("the first pass", state("Running"))
    folder.rmdir()
    retrying = wait_for("the binding to retry", state("Retrying"))
    assert "does not exist" in retrying.reason
    folder.mkdir()
    assert wait_for("the binding to run again", state("Running")).reason is None
