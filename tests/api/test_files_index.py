"""Indexing real photos through the official SDK against a live server, on SQLite and PostgreSQL.

One server and one indexed dataset per backend (module scope): the photos are analysed once and the tests
read, re-index, change and delete them. Expected faces come from running the same face pipeline on the
same bytes, never from numbers written here.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid

import pytest
import redis
from alibabacloud_imm20200930 import models
from live_immray import BACKENDS, sdk_error, unique
from live_indexing import batch_index, get_files, index_and_wait, indexing_server, new_dataset, wait_done
from PIL import Image
from sqlalchemy import func, select

from immray.services.analysis import analyzer_for
from immray.settings import NotifyTopic
from immray.store import Dataset, Figure, File
from photo_testkit import write_photo_set

REDIS_URL = "redis://127.0.0.1:6379/0"
STREAM = f"immray-test-index-{uuid.uuid4().hex}"


@pytest.fixture(scope="module")
def photos(tmp_path_factory, sample_photo):
    return write_photo_set(tmp_path_factory.mktemp("roots") / "library", sample_photo)


@pytest.fixture(scope="module", params=BACKENDS)
def server(request, tmp_path_factory, photos):
    topics = {"indexing": NotifyTopic(url=REDIS_URL, stream=STREAM)}
    with indexing_server(
        request, tmp_path_factory.mktemp("data"), request.param, [photos.root], notify_topics=topics
    ) as live:
        yield live
    redis.Redis().delete(STREAM)


@pytest.fixture(scope="module")
def indexed(server, photos):
    """A dataset holding every photo and every bad file, indexed in one request that asked for a message."""
    client = server.client()
    project, dataset = new_dataset(client)
    uris = photos.uris() + [photos.uri(name) for name in photos.bad]
    event_id = batch_index(
        client,
        project,
        dataset,
        uris,
        notification=models.Notification(mns=models.MNS(topic_name="indexing")),
        user_data="first batch",
    )
    return project, dataset, event_id, wait_done(client, project, dataset, uris)


def test_each_photo_is_indexed_with_the_faces_the_pipeline_finds(server, indexed, photos):
    project, dataset, _, files = indexed
    analyzer = analyzer_for(server.settings)
    for name, path in photos.good.items():
        file = files[photos.uri(name)]
        expected = analyzer.analyze(path.read_bytes())
        with Image.open(path) as image:
            size = image.size
        assert file.object_status == "Indexed" and not file.reason, name
        assert (file.image_width, file.image_height) == size == (expected.width, expected.height)
        assert file.size == path.stat().st_size and file.filename == name
        assert file.content_type == expected.content_type
        assert (file.project_name, file.dataset_name, file.object_type) == (project, dataset, "file")
        assert file.figure_count == len(file.figures) == len(expected.faces) >= 1, name
        boxes = sorted(
            (f.boundary.left, f.boundary.top, f.boundary.width, f.boundary.height) for f in file.figures
        )
        assert boxes == sorted(
            (f.boundary.left, f.boundary.top, f.boundary.width, f.boundary.height) for f in expected.faces
        )
        for figure in file.figures:
            box = figure.boundary
            assert (
                box.left >= 0
                and box.left + box.width <= size[0]
                and box.top >= 0
                and box.top + box.height <= size[1]
            )
            assert box.width >= 20 and box.height >= 20
            assert (
                figure.figure_type == "face" and figure.figure_cluster_id == "figure-cluster-id-unavailable"
            )
            assert (
                0 < figure.face_quality <= 1
                and 0 < figure.figure_confidence <= 1
                and 0 <= figure.sharpness <= 1
            )
            assert figure.head_pose is not None and abs(figure.head_pose.yaw) < 90
            uuid.UUID(figure.figure_id)


def test_a_mirrored_copy_has_its_faces_mirrored(indexed, photos):
    _, _, _, files = indexed
    original, mirrored = files[photos.uri("group.jpg")], files[photos.uri("group_mirrored.jpg")]
    width = original.image_width
    flipped = sorted(
        (width - f.boundary.left - f.boundary.width, f.boundary.top, f.boundary.width)
        for f in original.figures
    )
    found = sorted((f.boundary.left, f.boundary.top) for f in mirrored.figures)
    assert len(found) == len(flipped)
    for (x1, y1, side), (x2, y2) in zip(flipped, found, strict=True):  # the detector is not exactly symmetric
        assert abs(x1 - x2) <= side / 4 and abs(y1 - y2) <= side / 4


def test_bad_files_in_the_batch_each_fail_alone_with_a_reason(indexed, photos):
    _, _, _, files = indexed
    reasons = {name: files[photos.uri(name)].reason for name in photos.bad}
    assert all(files[photos.uri(name)].object_status == "Failed" for name in photos.bad)
    assert reasons["empty.jpg"].startswith("[InvalidImage]") and "empty" in reasons["empty.jpg"]
    assert reasons["truncated.jpg"].startswith("[InvalidImage]") and "truncated" in reasons["truncated.jpg"]
    assert reasons["notes.jpg"].startswith("[InvalidImage]") and "not an image" in reasons["notes.jpg"]
    assert all(not files[photos.uri(name)].figures for name in photos.bad)


def test_dataset_and_project_statistics_count_every_file(server, indexed, photos):
    project, dataset, _, files = indexed
    client = server.client()
    got = client.get_dataset(
        models.GetDatasetRequest(project_name=project, dataset_name=dataset, with_statistics=True)
    ).body.dataset
    total = sum(path.stat().st_size for path in [*photos.good.values(), *photos.bad.values()])
    assert (got.file_count, got.total_file_size) == (len(files), total)
    proj = client.get_project(
        models.GetProjectRequest(project_name=project, with_statistics=True)
    ).body.project
    assert (proj.file_count, proj.total_file_size) == (len(files), total)


def test_the_notification_lists_every_file_with_its_error(indexed, photos):
    project, dataset, event_id, files = indexed

    stream = redis.Redis(decode_responses=True)
    deadline = time.monotonic() + 30
    while not (messages := [fields for _, fields in stream.xrange(STREAM)]) and time.monotonic() < deadline:
        time.sleep(0.2)
    mine = [json.loads(m["content"]) for m in messages if json.loads(m["content"]).get("EventId") == event_id]
    assert len(mine) == 1
    content = mine[0]
    assert (content["ProjectName"], content["DatasetName"], content["Success"]) == (project, dataset, True)
    assert content["UserData"] == "first batch" and content["StartTime"] <= content["EndTime"]
    errors = {item["URI"]: item["Error"] for item in content["Files"]}
    assert set(errors) == set(files)
    assert all(errors[photos.uri(name)] == "" for name in photos.good)
    assert all(errors[photos.uri(name)] == files[photos.uri(name)].reason for name in photos.bad)
    assert [m for m in messages if json.loads(m["content"]).get("EventId") == event_id][0]["type"] == (
        "imm:Task:BatchIndexFileMeta"
    )


def _figure_rows(server, dataset: str):
    with server.db.read() as session:
        dataset_id = session.scalar(select(Dataset.id).where(Dataset.name == dataset))
        return session.execute(
            select(Figure.figure_id, Figure.file_id, Figure.deleted_at, Figure.change_seq).where(
                Figure.dataset_id == dataset_id
            )
        ).all()


def test_re_indexing_unchanged_files_is_a_no_op(server, indexed, photos):
    project, dataset, _, files = indexed
    before = _figure_rows(server, dataset)
    again = index_and_wait(server.client(), project, dataset, photos.uris())
    assert _figure_rows(server, dataset) == before
    for uri, file in again.items():
        assert file.object_status == "Indexed"
        assert [f.figure_id for f in file.figures] == [f.figure_id for f in files[uri].figures]


def test_a_changed_file_is_analysed_again_and_its_old_faces_become_tombstones(server, photos, sample_photo):
    client = server.client()
    project, dataset = new_dataset(client)
    path = photos.root / "photos" / f"changing-{uuid.uuid4().hex}.png"
    shutil.copyfile(sample_photo("astronaut"), path)
    uri = path.as_uri()
    first = index_and_wait(client, project, dataset, [uri])[uri]
    shutil.copyfile(sample_photo("portrait"), path)
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    second = index_and_wait(client, project, dataset, [uri])[uri]
    assert (second.image_width, second.figure_count) == (112, 1)
    assert not {f.figure_id for f in first.figures} & {f.figure_id for f in second.figures}
    rows = {row.figure_id: row for row in _figure_rows(server, dataset)}
    for old in first.figures:
        assert rows[old.figure_id].deleted_at is not None and rows[old.figure_id].file_id is None
    assert all(rows[f.figure_id].deleted_at is None for f in second.figures)
    assert min(rows[f.figure_id].change_seq for f in second.figures) > max(
        rows[f.figure_id].change_seq for f in first.figures
    ) or all(rows[f.figure_id].change_seq > 0 for f in second.figures)


@pytest.mark.parametrize(
    "make_uri",
    [
        pytest.param(lambda root, outside: (root / "photos").as_uri() + "/../../outside.jpg", id="dot-dot"),
        pytest.param(
            lambda root, outside: (root / "photos").as_uri() + "/%2e%2e/%2E%2E/outside.jpg", id="encoded"
        ),
        pytest.param(lambda root, outside: (root / "escape.jpg").as_uri(), id="symlink"),
        pytest.param(lambda root, outside: outside.as_uri(), id="outside-root"),
        pytest.param(lambda root, outside: (root / "photos").as_uri() + "/a%00.jpg", id="nul"),
        pytest.param(lambda root, outside: "file:photos/group.jpg", id="relative"),
        pytest.param(lambda root, outside: "file://otherhost" + str(root / "photos/group.jpg"), id="host"),
        pytest.param(lambda root, outside: "http://127.0.0.1/group.jpg", id="http"),
        pytest.param(lambda root, outside: "https://example.com/group.jpg", id="https"),
        pytest.param(lambda root, outside: "ftp://example.com/group.jpg", id="ftp"),
        pytest.param(lambda root, outside: "oss://unconfigured-bucket/group.jpg", id="unknown-bucket"),
        pytest.param(lambda root, outside: "group.jpg", id="no-scheme"),
    ],
)
def test_a_refused_uri_fails_the_whole_request_and_nothing_is_indexed(server, photos, make_uri):
    outside = photos.root.parent / "outside.jpg"
    shutil.copyfile(photos.good["portrait.png"], outside)
    escape = photos.root / "escape.jpg"
    if not escape.is_symlink():
        escape.symlink_to(outside)
    bad = make_uri(photos.root, outside)
    client = server.client()
    project, dataset = new_dataset(client)
    good = photos.uri("portrait.png")
    error = sdk_error(lambda: batch_index(client, project, dataset, [good, bad]))
    assert error.code == "InvalidArgument" and bad[:100] in error.message
    assert get_files(client, project, dataset, [good, bad]) == {}
    stats = client.get_dataset(
        models.GetDatasetRequest(project_name=project, dataset_name=dataset, with_statistics=True)
    ).body.dataset
    assert stats.file_count == 0


def test_a_percent_encoded_name_inside_the_root_is_read(server, photos):
    client = server.client()
    project, dataset = new_dataset(client)
    path = photos.root / "photos" / "with space & ü.jpg"
    shutil.copyfile(photos.good["portrait_large.jpg"], path)
    uri = path.as_uri()
    assert "%20" in uri
    file = index_and_wait(client, project, dataset, [uri])[uri]
    assert (file.object_status, file.figure_count, file.filename) == ("Indexed", 1, path.name)


def test_limits_and_bad_input_files(server, photos):
    client = server.client()
    project, dataset = new_dataset(client)
    too_many = [photos.uri("portrait.png") + f"?{n}" for n in range(101)]
    assert sdk_error(lambda: batch_index(client, project, dataset, too_many)).code == "LimitExceeded"
    twice = [photos.uri("portrait.png")] * 2
    assert sdk_error(lambda: batch_index(client, project, dataset, twice)).code == "InvalidArgument"
    response = server.post(
        "IndexFileMeta",
        {
            "ProjectName": project,
            "DatasetName": dataset,
            "File": json.dumps({"URI": photos.uri("portrait.png"), "CustomLabels": [1]}),
        },
    )
    assert response.status_code == 400 and "File.CustomLabels" in response.json()["Message"]
    missing = server.post("IndexFileMeta", {"ProjectName": project, "DatasetName": dataset, "File": "{}"})
    assert missing.status_code == 400 and "File.URI" in missing.json()["Message"]
    assert sdk_error(
        lambda: batch_index(client, project, unique("nodataset"), [photos.uri("portrait.png")])
    ).code == ("ResourceNotFound")
    with server.db.read() as session:
        assert session.scalar(select(func.count(File.id)).join(Dataset).where(Dataset.name == dataset)) == 0


def test_get_file_meta_projects_with_fields_and_answers_missing_files(server, indexed, photos):
    project, dataset, _, _ = indexed
    client = server.client()
    uri = photos.uri("group.jpg")
    got = client.get_file_meta(
        models.GetFileMetaRequest(
            project_name=project, dataset_name=dataset, uri=uri, with_fields=["ObjectStatus", "Figures"]
        )
    ).body.files
    assert len(got) == 1 and got[0].uri == uri and got[0].object_status == "Indexed"
    assert len(got[0].figures) == 6 and got[0].size is None and got[0].image_width is None
    missing = photos.uri("group.jpg") + "-missing"
    error = sdk_error(
        lambda: client.get_file_meta(
            models.GetFileMetaRequest(project_name=project, dataset_name=dataset, uri=missing)
        )
    )
    assert error.code == "ResourceNotFound"
    batch = client.batch_get_file_meta(
        models.BatchGetFileMetaRequest(project_name=project, dataset_name=dataset, uris=[missing, uri])
    ).body.files
    assert [file.uri for file in batch] == [uri]


def test_update_file_meta_sets_labels_and_records_face_moves(server, photos):
    client = server.client()
    project, dataset = new_dataset(client)
    uri = photos.uri("group_small.jpg")
    file = index_and_wait(client, project, dataset, [uri])[uri]
    figure = file.figures[0]
    client.update_file_meta(
        models.UpdateFileMetaRequest(
            project_name=project,
            dataset_name=dataset,
            file=models.InputFile(
                uri=uri, custom_id="holiday-7", custom_labels={"trip": "Rome", "n": 2}, title="Rome"
            ),
        )
    )
    got = get_files(client, project, dataset, [uri])[uri]
    assert (got.custom_id, got.custom_labels, got.title) == ("holiday-7", {"trip": "Rome", "n": 2}, "Rome")
    assert [f.figure_id for f in got.figures] == [f.figure_id for f in file.figures]

    def move(figure_id: str, cluster_id: str):
        return client.update_file_meta(
            models.UpdateFileMetaRequest(
                project_name=project,
                dataset_name=dataset,
                file=models.InputFile(
                    uri=uri,
                    figures=[
                        models.InputFileFigures(
                            figure_id=figure_id, figure_cluster_id=cluster_id, figure_type="face"
                        )
                    ],
                ),
            )
        )

    before = {row.figure_id: row.change_seq for row in _figure_rows(server, dataset)}
    move(figure.figure_id, "figure-cluster-id-independent")
    with server.db.read() as session:
        row = session.scalar(select(Figure).where(Figure.figure_id == figure.figure_id))
        assert row.pinned_cluster_id is None and row.change_seq > before[figure.figure_id]
    assert sdk_error(lambda: move(figure.figure_id, "Cluster-does-not-exist")).code == "ResourceNotFound"
    assert (
        sdk_error(lambda: move(str(uuid.uuid4()), "figure-cluster-id-independent")).code == "ResourceNotFound"
    )
    assert sdk_error(lambda: move(figure.figure_id, "")).code == "InvalidArgument"
    error = sdk_error(
        lambda: client.update_file_meta(
            models.UpdateFileMetaRequest(
                project_name=project, dataset_name=dataset, file=models.InputFile(uri=uri + "x")
            )
        )
    )
    assert error.code == "ResourceNotFound"


def test_deleting_file_meta_tombstones_the_faces_and_keeps_the_photo(server, photos):
    client = server.client()
    project, dataset = new_dataset(client)
    names = ["portrait.png", "portrait_mirrored.jpg", "astronaut_crop.jpg"]
    uris = [photos.uri(name) for name in names]
    files = index_and_wait(client, project, dataset, uris)
    client.delete_file_meta(
        models.DeleteFileMetaRequest(project_name=project, dataset_name=dataset, uri=uris[0])
    )
    client.batch_delete_file_meta(
        models.BatchDeleteFileMetaRequest(
            project_name=project, dataset_name=dataset, uris=[uris[1], uris[1] + "-never"]
        )
    )
    assert set(get_files(client, project, dataset, uris)) == {uris[2]}
    assert all(photos.good[name].is_file() for name in names)
    rows = {row.figure_id: row for row in _figure_rows(server, dataset)}
    for uri in uris[:2]:
        for figure in files[uri].figures:
            assert rows[figure.figure_id].deleted_at is not None and rows[figure.figure_id].file_id is None
    assert all(rows[f.figure_id].deleted_at is None for f in files[uris[2]].figures)
    stats = client.get_dataset(
        models.GetDatasetRequest(project_name=project, dataset_name=dataset, with_statistics=True)
    ).body.dataset
    assert (stats.file_count, stats.total_file_size) == (1, photos.good["astronaut_crop.jpg"].stat().st_size)
    error = sdk_error(
        lambda: client.delete_file_meta(
            models.DeleteFileMetaRequest(project_name=project, dataset_name=dataset, uri=uris[0])
        )
    )
    assert error.code == "ResourceNotFound"


def _cluster(client, project: str, dataset: str) -> None:
    task_id = client.create_figure_clustering_task(
        models.CreateFigureClusteringTaskRequest(project_name=project, dataset_name=dataset)
    ).body.task_id
    deadline = time.monotonic() + 120
    while True:
        task = client.get_task(
            models.GetTaskRequest(project_name=project, task_type="FaceClustering", task_id=task_id)
        ).body
        if task.status != "Running":
            assert task.status == "Succeeded", task.message
            return
        assert time.monotonic() < deadline
        time.sleep(0.2)


def test_a_face_moved_with_update_file_meta_stays_where_the_user_put_it(server, photos):
    client = server.client()
    project, dataset = new_dataset(
        client, workflow_parameters=[models.WorkflowParameter(name="FigureClusterMinFaces", value="2")]
    )
    names = [
        "portrait.png",
        "portrait_mirrored.jpg",
        "portrait_large.jpg",
        "astronaut_crop.jpg",
        "astronaut_small.jpg",
    ]
    uris = [photos.uri(name) for name in names]
    index_and_wait(client, project, dataset, uris)
    _cluster(client, project, dataset)
    files = get_files(client, project, dataset, uris)
    tom = files[uris[0]].figures[0]
    eileen_cluster = files[uris[3]].figures[0].figure_cluster_id
    assert tom.figure_cluster_id.startswith("Cluster-") and eileen_cluster.startswith("Cluster-")
    assert tom.figure_cluster_id != eileen_cluster
    client.update_file_meta(
        models.UpdateFileMetaRequest(
            project_name=project,
            dataset_name=dataset,
            file=models.InputFile(
                uri=uris[0],
                figures=[models.InputFileFigures(figure_id=tom.figure_id, figure_cluster_id=eileen_cluster)],
            ),
        )
    )
    _cluster(client, project, dataset)
    assert (
        get_files(client, project, dataset, [uris[0]])[uris[0]].figures[0].figure_cluster_id == eileen_cluster
    )
    # taken out again: the next task leaves it out of that cluster
    client.update_file_meta(
        models.UpdateFileMetaRequest(
            project_name=project,
            dataset_name=dataset,
            file=models.InputFile(
                uri=uris[0],
                figures=[
                    models.InputFileFigures(
                        figure_id=tom.figure_id, figure_cluster_id="figure-cluster-id-independent"
                    )
                ],
            ),
        )
    )
    _cluster(client, project, dataset)
    assert (
        get_files(client, project, dataset, [uris[0]])[uris[0]].figures[0].figure_cluster_id != eileen_cluster
    )
