"""The task life cycle every asynchronous IMM action shares: create, read, list, finish, forget.

A task is created Running (IMM has no queued state: a task waiting for its turn is Running without a
lease), with its request kept for GetTask ``RequestDefinition`` and the job that runs it
(``job_name``/``job_payload``), so any worker can run it again after a restart. It ends Succeeded or
Failed in the same transaction as its result and its notification (the outbox message), and is forgotten
``Settings.task_retention_days`` after it ended: from then on GetTask answers ResourceNotFound, whether or
not the purge has already deleted the row.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import String, and_, case, cast, delete, func, literal, or_, select, update
from sqlalchemy.orm import Session

from immray.jobs.catalog import load_jobs
from immray.jobs.registry import get_job
from immray.jobs.submission import submit
from immray.notify import enqueue, envelope, event_type_of, notification_topics
from immray.protocol.errors import ImmError
from immray.protocol.times import format_time
from immray.services.database import Database
from immray.services.datasets import find_dataset
from immray.services.listing import Listing, list_page
from immray.services.projects import find_project
from immray.store import Dataset, Project, SortKey, Task, TaskStatus, new_task_id, utcnow

MAX_USER_DATA_BYTES = 2048
# The one alias IMM's documentation forces on us: its events say FigureClustering, its task list
# FaceClustering. Every TaskType read from a client goes through canonical_task_type.
TASK_TYPE_ALIASES = {"FigureClustering": "FaceClustering"}
# Running tasks have no EndTime yet: they sort after every ended task.
END_OF_TIME = datetime(9999, 12, 31, tzinfo=UTC)


class LeaseLost(Exception):
    """This worker no longer holds the task: another one took it over, or it was released at shutdown."""


def canonical_task_type(task_type: str) -> str:
    return TASK_TYPE_ALIASES.get(task_type, task_type)


def new_event_id() -> str:
    """IMM-like EventId (``0ED-1Bz8z71k5TtsUejT4UJ16``): unique per request."""
    value = uuid.uuid4()
    return f"{value.hex[:3].upper()}-{_base62(value.int)}"


def _base62(number: int) -> str:
    digits = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
    text = ""
    while number:
        number, digit = divmod(number, 62)
        text = digits[digit] + text
    return text or "0"


@dataclass(frozen=True)
class NewTask:
    """What an asynchronous action asks for. ``job_name`` (a registered job) runs it with ``job_payload``;
    tasks with the same ``serial_key`` run one at a time, oldest first (``dataset_serial_key``)."""

    project_name: str
    task_type: str
    job_name: str | None
    job_payload: Mapping[str, Any] | None = None
    dataset_name: str | None = None
    tags: Mapping[str, Any] | None = None
    user_data: str | None = None
    notification: Mapping[str, Any] | None = None  # validated by notify.validate_notification
    request_definition: Mapping[str, Any] | None = None
    request_id: str | None = None
    serial_key: str | None = None


@dataclass(frozen=True)
class TaskRecord:
    task_id: str
    task_type: str
    project_name: str
    dataset_name: str | None
    status: str
    code: str | None
    message: str | None
    progress: int
    tags: dict[str, Any] | None
    user_data: str | None
    event_id: str
    request_id: str | None
    request_definition: str | None
    notification: dict[str, Any] | None
    result: dict[str, Any] | None
    start_time: datetime
    end_time: datetime | None
    job_name: str | None
    serial_key: str | None
    attempts: int


@dataclass(frozen=True)
class TimeRange:
    start: datetime | None = None
    end: datetime | None = None


@dataclass(frozen=True)
class TaskQuery:
    """ListTasks' filters and order; ``tag`` is TagSelector's ``(key, value)``."""

    project_name: str
    task_types: tuple[str, ...] = ()
    status: str | None = None
    start_time: TimeRange | None = None
    end_time: TimeRange | None = None
    tag: tuple[str, str] | None = None
    sort: str = "TaskId"  # TaskId | StartTime | EndTime
    descending: bool = False
    limit: int = 100
    token: str = ""


def dataset_serial_key(dataset_id: int) -> str:
    """The serial key that makes a dataset's tasks (clustering, merging) run one at a time."""
    return f"dataset:{dataset_id}"


# --- creating --------------------------------------------------------------------------------------


def create_task(session: Session, new: NewTask) -> TaskRecord:
    """Record ``new`` as a Running task in the caller's transaction; submit it once that commits
    (:func:`submit_task`), or use :func:`start_task`, which does both."""
    if new.user_data is not None and len(new.user_data.encode("utf-8")) > MAX_USER_DATA_BYTES:
        raise ImmError.invalid_argument(
            f"The parameter UserData must be at most {MAX_USER_DATA_BYTES} bytes long in UTF-8."
        )
    if new.tags is not None and not isinstance(new.tags, Mapping):
        raise ImmError.invalid_argument("The parameter Tags must be a JSON object.")
    if new.job_name is not None:
        spec = get_job(new.job_name)
        if spec is None:  # a process that runs no pool (an API-only server) has not loaded them yet
            load_jobs()
            spec = get_job(new.job_name)
        if spec is None or not spec.task:
            raise ValueError(f"{new.job_name!r} is not a registered task job")
    project = find_project(session, new.project_name)
    dataset = find_dataset(session, new.project_name, new.dataset_name) if new.dataset_name else None
    task_type = canonical_task_type(new.task_type)
    row = Task(
        task_id=new_task_id(task_type),
        project_id=project.id,
        dataset_id=dataset.id if dataset else None,
        task_type=task_type,
        status=TaskStatus.RUNNING,
        progress=0,
        tags=dict(new.tags) if new.tags is not None else None,
        user_data=new.user_data,
        event_id=new_event_id(),
        request_id=new.request_id,
        request_definition=(
            json.dumps(dict(new.request_definition), ensure_ascii=False, separators=(",", ":"))
            if new.request_definition is not None
            else None
        ),
        notification=dict(new.notification) if new.notification else None,
        job_name=new.job_name,
        job_payload=dict(new.job_payload or {}),
        serial_key=new.serial_key,
    )
    session.add(row)
    session.flush()
    return _record(row, project.name, dataset.name if dataset else None)


def submit_task(record: TaskRecord) -> None:
    """Hand a committed task to the workers; the task table keeps it if no worker is running now."""
    if record.job_name is not None:
        submit(record.job_name, {"task_id": record.task_id})


def start_task(db: Database, new: NewTask) -> TaskRecord:
    """Create the task, commit, submit it: the usual way an asynchronous action begins."""
    with db.write() as session:
        record = create_task(session, new)
    submit_task(record)
    return record


# --- reading ---------------------------------------------------------------------------------------


def get_task(
    db: Database, project_name: str, task_type: str, task_id: str, *, retention_days: float
) -> TaskRecord:
    """GetTask: the task of ``project_name`` with this type and id, unless it ended too long ago."""
    with db.read() as session:
        project = find_project(session, project_name)
        row = session.scalar(
            select(Task).where(
                Task.project_id == project.id,
                Task.task_id == task_id,
                Task.task_type == canonical_task_type(task_type),
                _retained(retention_days),
            )
        )
        if row is None:
            raise ImmError.resource_not_found("task", task_id)
        return _record(row, project.name, _dataset_name(session, row))


def list_tasks(db: Database, query: TaskQuery, *, retention_days: float) -> Listing[TaskRecord]:
    """ListTasks: a project's tasks, filtered, in keyset pages."""
    with db.read() as session:
        project = find_project(session, query.project_name)
        stmt = select(Task).where(Task.project_id == project.id, _retained(retention_days))
        if query.task_types:
            stmt = stmt.where(Task.task_type.in_({canonical_task_type(t) for t in query.task_types}))
        if query.status:
            stmt = stmt.where(Task.status == query.status)
        stmt = stmt.where(
            *_in_range(Task.start_time, query.start_time), *_in_range(Task.end_time, query.end_time)
        )
        if query.tag is not None:
            stmt = stmt.where(_tag_equals(session, *query.tag))
        page = list_page(session, stmt, _sort_key(query), limit=query.limit, token=query.token)
        names = _dataset_names(session, page.items)
        return Listing(
            [_record(row, project.name, names.get(row.dataset_id)) for row in page.items], page.next_token
        )


def _retained(retention_days: float):
    cutoff = utcnow() - timedelta(days=retention_days)
    return or_(Task.end_time.is_(None), Task.end_time >= cutoff)


def _in_range(column, window: TimeRange | None) -> list:
    if window is None:
        return []
    conditions = []
    if window.start is not None:
        conditions.append(column >= window.start)
    if window.end is not None:
        conditions.append(column <= window.end)
    return conditions


def _sort_key(query: TaskQuery) -> SortKey:
    if query.sort == "StartTime":
        column = Task.start_time
    elif query.sort == "EndTime":
        column = func.coalesce(Task.end_time, literal(END_OF_TIME, Task.end_time.type))
    else:
        column = Task.task_id
    return SortKey(query.sort, column, Task.id, descending=query.descending)


def _tag_equals(session: Session, key: str, value: str):
    """Tags[key] equals ``value`` as TagSelector writes it: a string tag by its text, a number or boolean
    by its JSON spelling (``n=1`` matches ``{"n": 1}``, ``ok=true`` matches ``{"ok": true}``)."""
    if session.get_bind().dialect.name == "postgresql":
        return Task.tags[key].as_string() == value  # ->> spells strings bare, numbers and booleans as JSON
    path = '$."' + key + '"'
    kind = func.json_type(Task.tags, path)
    spelled = case(
        (kind == "true", literal("true")),
        (kind == "false", literal("false")),
        (kind == "null", literal("null")),
        else_=cast(func.json_extract(Task.tags, path), String),
    )
    return and_(kind.is_not(None), spelled == value)


def _dataset_name(session: Session, row: Task) -> str | None:
    if row.dataset_id is None:
        return None
    return session.scalar(select(Dataset.name).where(Dataset.id == row.dataset_id))


def _dataset_names(session: Session, rows: list[Task]) -> dict[int, str]:
    ids = {row.dataset_id for row in rows if row.dataset_id is not None}
    if not ids:
        return {}
    return {
        id_: name
        for id_, name in session.execute(select(Dataset.id, Dataset.name).where(Dataset.id.in_(ids)))
    }


def _record(row: Task, project_name: str, dataset_name: str | None) -> TaskRecord:
    return TaskRecord(
        task_id=row.task_id,
        task_type=row.task_type,
        project_name=project_name,
        dataset_name=dataset_name,
        status=row.status,
        code=row.code,
        message=row.message,
        progress=row.progress,
        tags=row.tags,
        user_data=row.user_data,
        event_id=row.event_id,
        request_id=row.request_id,
        request_definition=row.request_definition,
        notification=row.notification,
        result=row.result,
        start_time=row.start_time,
        end_time=row.end_time,
        job_name=row.job_name,
        serial_key=row.serial_key,
        attempts=row.attempts,
    )


def load_task(session: Session, task_id: str) -> TaskRecord | None:
    """The task with this id, whatever its project (workers know tasks by id only)."""
    found = session.execute(
        select(Task, Project.name, Dataset.name)
        .join(Project, Project.id == Task.project_id)
        .outerjoin(Dataset, Dataset.id == Task.dataset_id)
        .where(Task.task_id == task_id)
    ).first()
    return None if found is None else _record(*found)


# --- progress and the end ----------------------------------------------------------------------------


def report_progress(db: Database, task_id: str, owner: str, percent: int) -> None:
    """Progress 0-100 of a task this worker holds; LeaseLost if it does not hold it any more."""
    percent = max(0, min(100, int(percent)))
    with db.write() as session:
        done = session.execute(
            update(Task)
            .where(Task.task_id == task_id, Task.lease_owner == owner, Task.status == TaskStatus.RUNNING)
            .values(progress=percent)
            .returning(Task.id)
        ).first()
    if done is None:
        raise LeaseLost(task_id)


def finish_task(
    session: Session,
    task_id: str,
    *,
    owner: str | None,
    status: TaskStatus,
    code: str = "",
    message: str = "",
    result: Mapping[str, Any] | None = None,
) -> TaskRecord:
    """End a Running task in the caller's transaction, with its result and its notification messages.

    ``owner`` is the lease this worker holds; LeaseLost if it does not hold it (the caller's transaction
    must then roll back, so the job's writes go too). ``owner=None`` ends a task that no live worker
    holds (the pool's give-up path for tasks whose runs all died).
    """
    if status is TaskStatus.RUNNING:
        raise ValueError("a task ends Succeeded or Failed")
    now = utcnow()
    conditions = [Task.task_id == task_id, Task.status == TaskStatus.RUNNING]
    if owner is not None:
        conditions.append(Task.lease_owner == owner)
    else:  # nobody may hold a live lease on it
        conditions.append(or_(Task.lease_owner.is_(None), Task.lease_expires_at < now))
    values: dict[str, Any] = {
        "status": status,
        "code": code or None,
        "message": message or None,
        "end_time": now,
        "lease_owner": None,
        "lease_expires_at": None,
    }
    if result is not None:
        values["result"] = dict(result)
    if status is TaskStatus.SUCCEEDED:
        values["progress"] = 100
    ended = session.execute(update(Task).where(*conditions).values(**values).returning(Task.id)).first()
    if ended is None:
        raise LeaseLost(task_id)
    record = load_task(session, task_id)
    assert record is not None
    for topic in notification_topics(record.notification):
        enqueue(session, topic=topic, message=task_message(record), task_id=record.task_id)
    return record


def task_message(record: TaskRecord) -> dict[str, str]:
    """The IMM envelope announcing that ``record`` ended; its content carries the task's result keys."""
    content: dict[str, Any] = {
        "ProjectName": record.project_name,
        "DatasetName": record.dataset_name or "",
        "RequestId": record.request_id or "",
        "StartTime": format_time(record.start_time),
        "EndTime": format_time(record.end_time) if record.end_time else "",
        "UserData": record.user_data or "",
        "TaskType": record.task_type,
        "TaskId": record.task_id,
        "EventId": record.event_id,
        "Status": record.status,
        "Code": record.code or "",
        "Message": record.message or "",
    }
    for key, value in (record.result or {}).items():
        content.setdefault(key, value)
    return envelope(
        message_id=str(uuid.uuid4()),
        event_type=event_type_of(record.task_type),
        project_name=record.project_name,
        content=content,
        at=record.end_time or utcnow(),
    )


def purge_finished_tasks(db: Database, *, retention_days: float) -> int:
    """Delete the tasks that ended more than ``retention_days`` ago; returns how many."""
    cutoff = utcnow() - timedelta(days=retention_days)
    with db.write() as session:
        result = session.execute(
            delete(Task).where(Task.status != TaskStatus.RUNNING, Task.end_time < cutoff)
        )
        return result.rowcount or 0
