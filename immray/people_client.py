"""`immray cluster`, `immray people` and `immray export`, as a client of a running server.

Everything goes through the IMM API (``immray.client``), so these commands work against any immray
server the saved key may reach: CreateFigureClusteringTask then GetTask until the task ends (progress
through a callback, so the CLI draws the bar and this module stays testable without a terminal);
QueryFigureClusters for the people; SimpleQuery ``Figures.FigureClusterId eq <id>`` for each person's
photos. The export is JSON (one object per person with their photos) or CSV (one row per person and
photo).
"""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from immray.client import ClientError, ImmClient

TASK_TYPE = "FaceClustering"
SORTS = {"photos": "ImageCount", "faces": "FaceCount", "name": "Name", "created": "CreateTime"}


@dataclass
class TaskEnd:
    task_id: str
    status: str
    code: str
    message: str
    seconds: float


@dataclass(frozen=True)
class Person:
    cluster_id: str
    name: str
    faces: int
    photos: int
    cover_uri: str
    custom_labels: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PersonPhotos:
    person: Person
    uris: list[str]


def run_clustering(
    client: ImmClient,
    project: str,
    dataset: str,
    *,
    on_progress: Callable[[int], None] = lambda percent: None,
    poll_seconds: float = 0.5,
    timeout: float | None = None,
) -> TaskEnd:
    """Start a clustering task and follow it until it ends (or ``timeout`` passes: ClientError)."""
    started = time.monotonic()
    body = client.call("CreateFigureClusteringTask", {"ProjectName": project, "DatasetName": dataset})
    task_id = str(body["TaskId"])
    deadline = None if timeout is None else started + timeout
    while True:
        task = client.call("GetTask", {"ProjectName": project, "TaskType": TASK_TYPE, "TaskId": task_id})
        status = str(task.get("Status", ""))
        if status != "Running":
            on_progress(100 if status == "Succeeded" else int(task.get("Progress") or 0))
            return TaskEnd(
                task_id,
                status,
                str(task.get("Code") or ""),
                str(task.get("Message") or ""),
                time.monotonic() - started,
            )
        on_progress(int(task.get("Progress") or 0))
        if deadline is not None and time.monotonic() >= deadline:
            raise ClientError(f"task {task_id} still running after {timeout:g} s; GetTask follows it")
        time.sleep(poll_seconds)


def people(client: ImmClient, project: str, dataset: str, *, sort: str = "photos") -> Iterator[Person]:
    """The dataset's people, most photos first (or by ``sort``: photos, faces, name, created)."""
    order = "asc" if sort == "name" else "desc"
    query = {"ProjectName": project, "DatasetName": dataset, "Sort": SORTS[sort], "Order": order}
    for item in client.pages("QueryFigureClusters", "FigureClusters", query):
        yield person_of(item)


def person_of(item: dict[str, Any]) -> Person:
    return Person(
        cluster_id=str(item.get("ObjectId", "")),
        name=str(item.get("Name") or ""),
        faces=int(item.get("FaceCount") or 0),
        photos=int(item.get("ImageCount") or 0),
        cover_uri=str((item.get("Cover") or {}).get("URI") or ""),
        custom_labels=dict(item.get("CustomLabels") or {}),
    )


def photos_of(client: ImmClient, project: str, dataset: str, cluster_id: str) -> list[str]:
    """The URIs of one person's photos (SimpleQuery pages)."""
    query = {
        "ProjectName": project,
        "DatasetName": dataset,
        "Query": {
            "Field": "Figures.FigureClusterId",
            "Operation": "eq",
            "Value": cluster_id,
            "SubQueries": [],
        },
        "Sort": "URI",
        "Order": "asc",
        "WithFields": ["URI"],
        "WithoutTotalHits": True,
    }
    return [str(item["URI"]) for item in client.pages("SimpleQuery", "Files", query)]


def count_people(client: ImmClient, project: str, dataset: str) -> int:
    body = client.call(
        "QueryFigureClusters",
        {"ProjectName": project, "DatasetName": dataset, "MaxResults": 1, "WithTotalCount": True},
    )
    return int(body.get("TotalCount") or 0)


def people_with_photos(
    client: ImmClient,
    project: str,
    dataset: str,
    *,
    on_count: Callable[[int], None] = lambda count: None,
    on_person: Callable[[], None] = lambda: None,
) -> list[PersonPhotos]:
    """Every person with the URIs of their photos; ``on_count`` first hears how many people there are."""
    on_count(count_people(client, project, dataset))
    found = []
    for person in people(client, project, dataset):
        found.append(PersonPhotos(person, photos_of(client, project, dataset, person.cluster_id)))
        on_person()
    return found


def to_json(project: str, dataset: str, found: list[PersonPhotos]) -> str:
    document = {
        "ProjectName": project,
        "DatasetName": dataset,
        "People": [
            {
                "ClusterId": entry.person.cluster_id,
                "Name": entry.person.name,
                "FaceCount": entry.person.faces,
                "ImageCount": entry.person.photos,
                "CoverURI": entry.person.cover_uri,
                "CustomLabels": entry.person.custom_labels,
                "Photos": entry.uris,
            }
            for entry in found
        ],
    }
    return json.dumps(document, ensure_ascii=False, indent=2) + "\n"


CSV_COLUMNS = ("ClusterId", "Name", "FaceCount", "ImageCount", "URI")


def to_csv(found: list[PersonPhotos]) -> str:
    """One row per (person, photo); a photo with two people appears on two rows."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for entry in found:
        p = entry.person
        for uri in entry.uris:
            writer.writerow((p.cluster_id, p.name, p.faces, p.photos, uri))
    return out.getvalue()
