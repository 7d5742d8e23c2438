"""GetTask and ListTasks through the official SDK against the whole server (the Serve application on the
session's Ray), on both backends; a clustering task run by its dataset actor is seen ending and notified."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

import pytest
import redis
from alibabacloud_imm20200930 import models as imm
from alibabacloud_imm20200930.client import Client
from alibabacloud_tea_openapi.exceptions import ClientException
from sqlalchemy import update

from immray.policy import ADMIN_POLICY
from immray.protocol.times import format_time
from immray.services import access_keys, tasks
from immray.services.database import Database
from immray.services.tasks import NewTask, TaskRecord
from immray.settings import NotifyTopic
from immray.store import Task, TaskStatus
from ray_testkit import serve_app
from task_testkit import BACKENDS, add_dataset, fresh_database_url, make_settings, sdk_client, wait_for

PROJECT = "tasks_project"
T0 = datetime(2026, 1, 1, tzinfo=datetime.now().astimezone().tzinfo).astimezone()


@dataclass
class Live:
    client: Client
    db: Database
    stream: str
    records: dict[str, TaskRecord]


def _seed(db: Database) -> dict[str, TaskRecord]:
    """Five tasks with known types, states, times and tags (no job: the dataset actors leave them alone)."""
    add_dataset(db, PROJECT, "ds")
    add_dataset(db, "elsewhere", "ds")
    plan = {
        # name: task type, status, start offset (h), end offset (h) or None, tags
        "a": ("FaceClustering", "Succeeded", 0, 1, {"env": "prod", "n": 1}),
        "b": ("FigureClustering", "Failed", 2, 3, {"env": "test", "n": 2, "ok": True}),
        "c": ("FigureClustersMerging", "Succeeded", 4, 9, {"env": "prod", "n": "1"}),
        "d": ("FaceClustering", "Running", 6, None, {"env": "prod"}),
        "e": ("FaceClustering", "Succeeded", 8, 5 + 24 * 365, None),
    }
    records = {}
    for name, (task_type, status, start, end, tags) in plan.items():
        new = NewTask(
            project_name=PROJECT,
            dataset_name="ds",
            task_type=task_type,
            job_name=None,
            tags=tags,
            user_data=f"user data {name}",
            request_definition={"ProjectName": PROJECT, "Name": name},
        )
        record = tasks.start_task(db, new)
        values = {"status": status, "start_time": T0 + timedelta(hours=start), "progress": 40}
        if end is not None:
            values["end_time"] = T0 + timedelta(hours=end)
        if status == "Failed":
            values |= {"code": "InvalidArgument", "message": "no faces"}
        with db.write() as session:
            session.execute(update(Task).where(Task.task_id == record.task_id).values(**values))
        records[name] = record
    tasks.start_task(db, NewTask(project_name="elsewhere", task_type="FaceClustering", job_name=None))
    return records


@pytest.fixture(scope="module", params=BACKENDS)
def live(request, tmp_path_factory, ray_runtime) -> Iterator[Live]:
    data_dir = tmp_path_factory.mktemp("tasks-api")
    url = fresh_database_url(request, request.param, data_dir)
    stream = f"immray-test-{data_dir.name}-{request.param}"
    settings = make_settings(
        url,
        data_dir,
        notify_topics={"done": NotifyTopic(url="redis://127.0.0.1:6379/0", stream=stream)},
        task_retention_days=365 * 10,  # the seeded tasks ended in 2026
    )
    db = Database.connect(url)
    records = _seed(db)
    admin = access_keys.create_key(db, ADMIN_POLICY, is_admin=True)
    try:
        with serve_app(settings) as address:
            yield Live(sdk_client(address, admin.info.access_key_id, admin.secret), db, stream, records)
    finally:
        redis.Redis().delete(stream)
        db.close()


def names(live: Live, found) -> list[str]:
    by_id = {record.task_id: name for name, record in live.records.items()}
    return [by_id[task.task_id] for task in found]


def list_tasks(live: Live, **params) -> imm.ListTasksResponseBody:
    return live.client.list_tasks(imm.ListTasksRequest(project_name=PROJECT, **params)).body


def sdk_code(call) -> str:
    with pytest.raises(ClientException) as refused:
        call()
    return refused.value.code


def test_get_task_answers_every_field_of_the_sdk_model(live):
    record = live.records["b"]
    body = live.client.get_task(
        imm.GetTaskRequest(
            project_name=PROJECT, task_type="FaceClustering", task_id=record.task_id, request_definition=True
        )
    ).body
    assert (body.project_name, body.task_type, body.task_id, body.event_id) == (
        PROJECT,
        "FaceClustering",
        record.task_id,
        record.event_id,
    )
    assert (body.status, body.code, body.message, body.progress) == (
        "Failed",
        "InvalidArgument",
        "no faces",
        40,
    )
    assert body.start_time == format_time(T0 + timedelta(hours=2)) and body.start_time.endswith("Z")
    assert body.end_time == format_time(T0 + timedelta(hours=3))
    assert body.tags == {"env": "test", "n": 2, "ok": True} and body.user_data == "user data b"
    assert json.loads(body.task_request_definition) == {"ProjectName": PROJECT, "Name": "b"}
    plain = live.client.get_task(
        imm.GetTaskRequest(project_name=PROJECT, task_type="FigureClustering", task_id=record.task_id)
    ).body
    assert plain.task_request_definition is None and plain.task_id == record.task_id


def test_get_task_refuses_what_it_cannot_find(live):
    record = live.records["a"]
    for project, task_type, task_id in (
        (PROJECT, "FaceClustering", "FaceClustering-00000000-0000-4000-8000-000000000000"),
        (PROJECT, "FigureClustersMerging", record.task_id),
        ("elsewhere", "FaceClustering", record.task_id),
    ):
        request = imm.GetTaskRequest(project_name=project, task_type=task_type, task_id=task_id)
        assert sdk_code(lambda request=request: live.client.get_task(request)) == "ResourceNotFound"
    request = imm.GetTaskRequest(project_name=PROJECT, task_id=record.task_id)
    assert sdk_code(lambda: live.client.get_task(request)) == "InvalidArgument"
    nowhere = imm.ListTasksRequest(project_name="nowhere")
    assert sdk_code(lambda: live.client.list_tasks(nowhere)) == "ResourceNotFound"


def test_list_tasks_filters_by_type_status_tags_and_times(live):
    assert names(live, list_tasks(live, task_types=["FigureClustering"], sort="StartTime").tasks) == [
        "a",
        "b",
        "d",
        "e",
    ]
    assert names(live, list_tasks(live, task_types=["FigureClustersMerging"]).tasks) == ["c"]
    assert names(live, list_tasks(live, status="Running").tasks) == ["d"]
    assert names(live, list_tasks(live, tag_selector="env=prod", sort="StartTime").tasks) == ["a", "c", "d"]
    assert names(live, list_tasks(live, tag_selector="n=1", sort="StartTime").tasks) == ["a", "c"]
    assert names(live, list_tasks(live, tag_selector="ok=true").tasks) == ["b"]
    assert names(live, list_tasks(live, tag_selector="env=nowhere").tasks) == []
    window = imm.TimeRange(
        start=format_time(T0 + timedelta(hours=2)), end=format_time(T0 + timedelta(hours=6))
    )
    assert names(live, list_tasks(live, start_time_range=window, sort="StartTime").tasks) == ["b", "c", "d"]
    ended = imm.TimeRange(start=format_time(T0 + timedelta(hours=3)))  # running tasks have not ended
    assert names(live, list_tasks(live, end_time_range=ended, sort="EndTime").tasks) == ["b", "c", "e"]
    both = list_tasks(live, start_time_range=window, status="Succeeded", tag_selector="env=prod")
    assert names(live, both.tasks) == ["c"]


def test_list_tasks_sorts_and_pages_with_max_results_as_a_string(live):
    by_end = list_tasks(live, sort="EndTime", order="desc").tasks
    assert names(live, by_end) == ["d", "e", "c", "b", "a"]  # still running: after every end
    assert names(live, list_tasks(live, sort="StartTime", order="DESC").tasks) == ["e", "d", "c", "b", "a"]
    by_id = sorted(live.records, key=lambda name: live.records[name].task_id)
    assert names(live, list_tasks(live).tasks) == by_id

    seen, token, pages = [], None, 0
    while True:
        page = list_tasks(live, sort="StartTime", max_results=2, next_token=token)
        assert page.max_results == "2" and page.project_name == PROJECT
        seen += names(live, page.tasks)
        pages += 1
        token = page.next_token
        if not token:
            break
    assert (seen, pages) == (["a", "b", "c", "d", "e"], 3)
    first = list_tasks(live, max_results=1)
    assert first.tasks[0].task_request_definition is None
    with_request = list_tasks(live, max_results=1, request_definition=True)
    assert json.loads(with_request.tasks[0].task_request_definition)["ProjectName"] == PROJECT


@pytest.mark.parametrize(
    "params",
    [
        {"max_results": 101},
        {"status": "Done"},
        {"sort": "Name"},
        {"tag_selector": "no-equals-sign"},
        {"start_time_range": imm.TimeRange(start="yesterday")},
        {"end_time_range": imm.TimeRange(start="2026-01-02T00:00:00Z", end="2026-01-01T00:00:00Z")},
        {"next_token": "not-a-token"},
    ],
)
def test_list_tasks_refuses_bad_parameters(live, params):
    assert sdk_code(lambda: list_tasks(live, **params)) == "InvalidArgument"


def test_a_page_token_belongs_to_its_sort(live):
    token = list_tasks(live, sort="StartTime", max_results=1).next_token
    assert sdk_code(lambda: list_tasks(live, sort="EndTime", next_token=token)) == "InvalidArgument"


def test_a_clustering_task_run_by_its_dataset_actor_is_seen_ending_and_notified(live):
    """In the other project, so the listings above see only the seeded tasks."""
    created = live.client.create_figure_clustering_task(
        imm.CreateFigureClusteringTaskRequest(
            project_name="elsewhere",
            dataset_name="ds",
            notification=imm.Notification(mns=imm.MNS(topic_name="done")),
            user_data="tell me",
        )
    ).body
    request = imm.GetTaskRequest(
        project_name="elsewhere", task_type="FaceClustering", task_id=created.task_id
    )
    body = wait_for(
        "the task to end", lambda: (b := live.client.get_task(request).body).status != "Running" and b
    )
    assert (body.status, body.progress, body.event_id) == ("Succeeded", 100, created.event_id)
    entries = wait_for("the message in Redis", lambda: redis.Redis().xrange(live.stream))
    assert len(entries) == 1
    message = {key.decode(): value.decode() for key, value in entries[0][1].items()}
    assert message["type"] == "imm:Task:FigureClustering" and message["source"] == "acs.imm"
    content = json.loads(message["content"])
    assert (content["TaskId"], content["Status"], content["UserData"]) == (
        created.task_id,
        "Succeeded",
        "tell me",
    )
    assert (content["ClustersCreated"], content["FacesAssigned"]) == (0, 0)  # the dataset has no photo
    assert content["EndTime"] == body.end_time and content["StartTime"] == body.start_time
    with live.db.read() as session:
        row = session.query(Task).filter_by(task_id=created.task_id).one()
        assert (row.status, row.attempts, row.lease_owner) == (TaskStatus.SUCCEEDED, 1, None)
