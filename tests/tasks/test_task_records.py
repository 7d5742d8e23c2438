"""The task record: creation rules, reading with the TaskType alias, ending with its message, retention."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
import task_jobs  # noqa: F401  (registers the test jobs)
from sqlalchemy import select, update

from immray.protocol.errors import ImmError
from immray.services import tasks
from immray.services.tasks import LeaseLost, NewTask, TaskQuery
from immray.store import OutboxMessage, Task, TaskStatus, utcnow
from task_testkit import add_dataset

UUID4 = r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"


def new_task(**values) -> NewTask:
    defaults = dict(project_name="proj", dataset_name="ds", task_type="FaceClustering", job_name="test.work")
    return NewTask(**(defaults | values))


def test_a_new_task_is_running_with_ids_tags_and_its_request(db):
    add_dataset(db)
    with db.write() as session:
        first = tasks.create_task(
            session,
            new_task(
                task_type="FigureClustering",
                tags={"env": "test", "n": 1, "ok": True, "nested": {"a": [1, 2]}},
                user_data="u" * 2048,
                request_definition={"ProjectName": "proj", "Tags": {"n": 1}},
                request_id="REQ-1",
            ),
        )
        second = tasks.create_task(session, new_task())
    assert re.fullmatch(f"FaceClustering-{UUID4}", first.task_id)
    assert first.task_type == "FaceClustering" and first.status == "Running" and first.progress == 0
    assert first.event_id != second.event_id and first.task_id != second.task_id
    got = tasks.get_task(db, "proj", "FaceClustering", first.task_id, retention_days=7)
    assert got.tags == {"env": "test", "n": 1, "ok": True, "nested": {"a": [1, 2]}}
    assert json.loads(got.request_definition) == {"ProjectName": "proj", "Tags": {"n": 1}}
    assert (got.user_data, got.request_id, got.dataset_name, got.end_time) == (
        "u" * 2048,
        "REQ-1",
        "ds",
        None,
    )


@pytest.mark.parametrize(
    ("values", "code", "names"),
    [
        ({"user_data": "é" * 1025}, "InvalidArgument", "UserData"),  # 2050 bytes in UTF-8
        ({"project_name": "nope"}, "ResourceNotFound", "nope"),
        ({"dataset_name": "nope"}, "ResourceNotFound", "nope"),
    ],
)
def test_a_task_is_refused_with_a_clear_error(db, values, code, names):
    add_dataset(db)
    with pytest.raises(ImmError) as refused, db.write() as session:
        tasks.create_task(session, new_task(**values))
    assert refused.value.code == code and names in refused.value.message


def test_get_task_reads_the_alias_and_refuses_another_type_or_project(db):
    add_dataset(db)
    add_dataset(db, "other", "ds")
    record = tasks.start_task(db, new_task())
    assert (
        tasks.get_task(db, "proj", "FigureClustering", record.task_id, retention_days=7).task_id
        == record.task_id
    )
    for project, task_type in (("proj", "FigureClustersMerging"), ("other", "FaceClustering")):
        with pytest.raises(ImmError) as missing:
            tasks.get_task(db, project, task_type, record.task_id, retention_days=7)
        assert missing.value.code == "ResourceNotFound"


def test_the_end_and_its_message_commit_together_or_not_at_all(db):
    add_dataset(db)
    record = tasks.start_task(
        db, new_task(notification={"MNS": {"TopicName": "a"}, "RocketMQ": {"TopicName": "b"}})
    )
    with db.write() as session:
        session.execute(update(Task).values(lease_owner="me"))

    with pytest.raises(RuntimeError), db.write() as session:
        tasks.finish_task(
            session, record.task_id, owner="me", status=TaskStatus.SUCCEEDED, result={"Clusters": 3}
        )
        raise RuntimeError("the job's own write failed after the task was ended")
    with db.read() as session:
        assert session.scalar(select(Task.status)) == "Running"
        assert session.scalars(select(OutboxMessage)).all() == []

    with db.write() as session:
        ended = tasks.finish_task(
            session, record.task_id, owner="me", status=TaskStatus.SUCCEEDED, result={"Clusters": 3}
        )
    assert (ended.status, ended.progress, ended.result) == ("Succeeded", 100, {"Clusters": 3})
    with db.read() as session:
        messages = session.scalars(select(OutboxMessage).order_by(OutboxMessage.topic)).all()
    assert [m.topic for m in messages] == ["a", "b"]
    content = json.loads(messages[0].payload["content"])
    assert content["TaskId"] == record.task_id and content["Status"] == "Succeeded"
    assert content["Clusters"] == 3 and content["ProjectName"] == "proj" and content["DatasetName"] == "ds"
    assert messages[0].payload["type"] == "imm:Task:FigureClustering"


def test_only_the_lease_holder_ends_a_task(db):
    add_dataset(db)
    record = tasks.start_task(db, new_task())
    with db.write() as session:
        session.execute(
            update(Task).values(lease_owner="someone", lease_expires_at=utcnow() + timedelta(minutes=1))
        )
    with pytest.raises(LeaseLost), db.write() as session:
        tasks.finish_task(
            session, record.task_id, owner="me", status=TaskStatus.FAILED, code="X", message="y"
        )
    with pytest.raises(LeaseLost), db.write() as session:  # nor the give-up path while a lease is live
        tasks.finish_task(
            session, record.task_id, owner=None, status=TaskStatus.FAILED, code="X", message="y"
        )
    assert tasks.get_task(db, "proj", "FaceClustering", record.task_id, retention_days=7).status == "Running"


def test_tasks_past_retention_are_not_found_and_are_purged(db):
    add_dataset(db)
    old, recent, running = (tasks.start_task(db, new_task()) for _ in range(3))
    now = utcnow()
    with db.write() as session:
        for record, ended in ((old, now - timedelta(days=7, minutes=1)), (recent, now - timedelta(days=6))):
            session.execute(
                update(Task)
                .where(Task.task_id == record.task_id)
                .values(status=TaskStatus.SUCCEEDED, start_time=ended, end_time=ended)
            )
        session.execute(
            update(Task).where(Task.task_id == running.task_id).values(start_time=now - timedelta(days=30))
        )
    with pytest.raises(ImmError) as gone:
        tasks.get_task(db, "proj", "FaceClustering", old.task_id, retention_days=7)
    assert gone.value.code == "ResourceNotFound"
    listed = tasks.list_tasks(db, TaskQuery(project_name="proj"), retention_days=7)
    assert {r.task_id for r in listed.items} == {recent.task_id, running.task_id}

    assert tasks.purge_finished_tasks(db, retention_days=7) == 1
    with db.read() as session:
        assert set(session.scalars(select(Task.task_id))) == {recent.task_id, running.task_id}
    assert tasks.purge_finished_tasks(db, retention_days=5) == 1  # the retention is a setting
    assert tasks.get_task(db, "proj", "FaceClustering", running.task_id, retention_days=5).status == "Running"
