"""``immray status``: what the deployment is doing now, from the database and (scale-out) the broker.

From the database (both modes): the tasks running (who holds them, how far they are), the tasks waiting
(Running without a lease: queued, or behind another task of their dataset) and the files waiting for their
analysis. From the broker (scale-out): the messages waiting in each queue, and the workers that answer a
broadcast within ``timeout`` seconds, with their processes and the jobs they are running.
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from immray.services.database import Database
from immray.settings import Settings
from immray.store import Dataset, File, ObjectStatus, Project, Task, TaskStatus, utcnow


@dataclass(frozen=True)
class RunningTask:
    task_id: str
    task_type: str
    project: str
    dataset: str | None
    progress: int
    attempt: int
    worker: str | None  # the lease owner: host:pid:random
    lease_expired: bool


@dataclass(frozen=True)
class WorkerSeen:
    name: str
    processes: int
    running: list[str]  # "job (task id or file id)"


@dataclass
class Status:
    mode: str  # embedded | scale-out
    broker: str | None = None
    broker_error: str | None = None
    queues: dict[str, int] = field(default_factory=dict)
    workers: list[WorkerSeen] = field(default_factory=list)
    running_tasks: list[RunningTask] = field(default_factory=list)
    waiting_tasks: int = 0
    pending_files: int = 0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def gather_status(settings: Settings, db: Database, *, timeout: float = 1.0) -> Status:
    status = Status(mode="scale-out" if settings.broker_url else "embedded")
    _from_database(db, status)
    if settings.broker_url:
        _from_broker(settings, status, timeout)
    return status


def _from_database(db: Database, status: Status) -> None:
    now = utcnow()
    with db.read() as session:
        rows = session.execute(
            select(Task, Project.name, Dataset.name)
            .join(Project, Project.id == Task.project_id)
            .outerjoin(Dataset, Dataset.id == Task.dataset_id)
            .where(Task.status == TaskStatus.RUNNING, Task.lease_owner.is_not(None))
            .order_by(Task.id)
        ).all()
        status.running_tasks = [
            RunningTask(
                task_id=task.task_id,
                task_type=task.task_type,
                project=project,
                dataset=dataset,
                progress=task.progress,
                attempt=task.attempts,
                worker=task.lease_owner,
                lease_expired=_expired(task.lease_expires_at, now),
            )
            for task, project, dataset in rows
        ]
        status.waiting_tasks = session.scalar(
            select(func.count(Task.id)).where(Task.status == TaskStatus.RUNNING, Task.lease_owner.is_(None))
        )
        status.pending_files = session.scalar(
            select(func.count(File.id)).where(File.object_status == ObjectStatus.PENDING)
        )


def _expired(at: datetime | None, now: datetime) -> bool:
    return at is not None and at < now


def _from_broker(settings: Settings, status: Status, timeout: float) -> None:
    from immray.jobs.celery_app import Queues, display_url, make_celery

    status.broker = display_url(settings.broker_url or "")
    app = make_celery(settings)
    try:
        with app.connection_for_read() as connection:
            connection.ensure_connection(max_retries=1)
            for queue in Queues.of(settings).names:
                status.queues[queue] = _depth(connection, queue)
        inspect = app.control.inspect(timeout=timeout)
        stats = inspect.stats() or {}
        active = inspect.active() or {}
    except Exception as exc:
        status.broker_error = f"{type(exc).__name__}: {exc}"
        return
    finally:
        app.close()
    for name in sorted(set(stats) | set(active)):
        pool = (stats.get(name) or {}).get("pool") or {}
        status.workers.append(
            WorkerSeen(
                name=name,
                processes=int(pool.get("max-concurrency") or len(pool.get("processes") or ())),
                running=[_describe(job) for job in active.get(name) or ()],
            )
        )


def _depth(connection: Any, queue: str) -> int:
    """Messages waiting in ``queue`` (0 for a queue no worker or server has declared yet)."""
    channel = connection.channel()  # its own: RabbitMQ closes a channel that asked for a missing queue
    try:
        return int(channel.queue_declare(queue=queue, passive=True).message_count)
    except connection.channel_errors:
        return 0
    finally:
        with contextlib.suppress(Exception):  # already closed by the broker
            channel.close()


def _describe(job: dict[str, Any]) -> str:
    args = job.get("args") or []
    name = str(args[0]) if args else str(job.get("name"))
    payload = args[1] if len(args) > 1 and isinstance(args[1], dict) else {}
    if "task_id" in payload:
        return f"{name} {payload['task_id']}"
    if "file_id" in payload:
        return f"{name} file {payload['file_id']}"
    return name
