"""What the people tests share: a live server that may read the test photos and notify a Redis stream,
and SDK helpers to index, cluster, wait for tasks and read people and their faces."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from alibabacloud_imm20200930 import models as imm
from alibabacloud_imm20200930.client import Client
from live_immray import BACKENDS, LiveImmray
from live_indexing import index_and_wait, indexing_server, new_dataset
from people_photos import COPIES, GROUP, centre, make_photos, who

from immray.settings import NotifyTopic

WAIT_SECONDS = 300
TOPIC = "people-done"


@dataclass
class People:
    """A live server, its test photos and the Redis stream its task notifications go to."""

    live: LiveImmray
    photos: dict[str, Path]
    stream: str

    @property
    def client(self) -> Client:
        return self.live.client()

    def uri(self, name: str) -> str:
        return self.photos[name].as_uri()

    def new_dataset(self, **options: Any) -> tuple[str, str]:
        return new_dataset(self.client, **options)

    def index(self, project: str, dataset: str, names: list[str]) -> dict[str, imm.File]:
        files = index_and_wait(self.client, project, dataset, [self.uri(name) for name in names])
        failed = {uri: file.reason for uri, file in files.items() if file.object_status != "Indexed"}
        assert not failed, failed
        return files

    def notifications(self, *task_ids: str, timeout: float = 30.0) -> dict[str, dict[str, Any]]:
        """TaskId -> content of every task message in the stream so far, once the messages of ``task_ids``
        are there (the outbox is sent by the ingress's dispatcher, a moment after the task ended)."""
        deadline = time.monotonic() + timeout
        while True:
            found = {}
            for _, fields in redis.Redis().xrange(self.stream):
                content = json.loads(fields[b"content"])
                if "TaskId" in content:
                    found[content["TaskId"]] = content
            if set(task_ids) <= set(found) or time.monotonic() > deadline:
                return found
            time.sleep(0.1)


@pytest.fixture(scope="module", params=BACKENDS)
def people_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[People]:
    """A whole server per backend (``immray``'s params), reading the photos of ``people_photos``."""
    backend = request.param
    folder = tmp_path_factory.mktemp("photos")
    photos = make_photos(folder)
    stream = f"immray-people-{uuid.uuid4().hex[:8]}"
    with indexing_server(
        request,
        tmp_path_factory.mktemp("immray"),
        backend,
        [folder],
        min_face_px=80,  # the test photos' faces are 90 px and more: no upsampling, a faster suite
        task_poll_seconds=0.1,
        notify_poll_seconds=0.05,
        notify_topics={TOPIC: NotifyTopic(url="redis://127.0.0.1:6379/0", stream=stream)},
    ) as live:
        try:
            yield People(live, photos, stream)
        finally:
            redis.Redis().delete(stream)


def notify() -> imm.Notification:
    return imm.Notification(mns=imm.MNS(topic_name=TOPIC))


def start_clustering(client: Client, project: str, dataset: str, **options: Any) -> str:
    response = client.create_figure_clustering_task(
        imm.CreateFigureClusteringTaskRequest(project_name=project, dataset_name=dataset, **options)
    )
    return response.body.task_id


def wait_task(client: Client, project: str, task_id: str) -> imm.GetTaskResponseBody:
    """The task once it ended (its TaskType is read from its id)."""
    task_type = task_id.rsplit("-", 5)[0]
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        task = client.get_task(
            imm.GetTaskRequest(project_name=project, task_type=task_type, task_id=task_id)
        ).body
        if task.status != "Running":
            return task
        assert time.monotonic() < deadline, f"task {task_id} still Running at {task.progress}%"
        time.sleep(0.1)


def cluster(client: Client, project: str, dataset: str) -> imm.GetTaskResponseBody:
    task = wait_task(client, project, start_clustering(client, project, dataset))
    assert task.status == "Succeeded", (task.code, task.message)
    return task


def merge(client: Client, project: str, dataset: str, to: str, froms: list[str]) -> imm.GetTaskResponseBody:
    response = client.create_figure_clusters_merging_task(
        imm.CreateFigureClustersMergingTaskRequest(
            project_name=project, dataset_name=dataset, to=to, froms=froms
        )
    )
    task = wait_task(client, project, response.body.task_id)
    assert task.status == "Succeeded", (task.code, task.message)
    return task


def all_people(client: Client, project: str, dataset: str, **query: Any) -> list[imm.FigureCluster]:
    found, token = [], None
    while True:
        body = client.query_figure_clusters(
            imm.QueryFigureClustersRequest(
                project_name=project, dataset_name=dataset, next_token=token, max_results=100, **query
            )
        ).body
        found.extend(body.figure_clusters)
        token = body.next_token
        if not token:
            return found


def photos_of(client: Client, project: str, dataset: str, cluster_id: str, page: int = 100) -> list[imm.File]:
    """Every photo of one person, through SimpleQuery's pages."""
    query = imm.SimpleQuery(field="Figures.FigureClusterId", operation="eq", value=cluster_id)
    found, token = [], None
    while True:
        body = client.simple_query(
            imm.SimpleQueryRequest(
                project_name=project, dataset_name=dataset, query=query, max_results=page, next_token=token
            )
        ).body
        found.extend(body.files)
        token = body.next_token
        if not token:
            return found


def faces(client: Client, project: str, dataset: str, uris: list[str]) -> dict[str, list[imm.Figure]]:
    """URI -> its faces, as GetFileMeta shows them."""
    body = client.batch_get_file_meta(
        imm.BatchGetFileMetaRequest(project_name=project, dataset_name=dataset, uris=uris)
    ).body
    return {file.uri: list(file.figures or []) for file in body.files}


def who_is_who(people: People, project: str, dataset: str, names: list[str]) -> dict[tuple[str, str], str]:
    """(photo name, FigureId) -> person, from geometry: ``group.jpg``'s faces name the group's people
    (by FigureId), the portrait is one person."""
    found = faces(people.client, project, dataset, [people.uri(name) for name in names])
    by_uri = {people.uri(name): name for name in names}
    reference = {
        "group": [(figure.figure_id, centre(figure.boundary)) for figure in found[people.uri(GROUP[0].name)]],
        "portrait": [("portrait", (56.0, 56.0))],
    }
    identity = {}
    for uri, figures in found.items():
        name = by_uri[uri]
        for figure in figures:
            source = COPIES[name].source
            identity[(name, figure.figure_id)] = who(name, figure.boundary, reference[source])
    return identity
