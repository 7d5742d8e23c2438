"""Who runs which task: leases in the task table, so tasks survive the death of the process running them.

A worker claims a Running task by writing its name and a lease expiry into the row, renews the lease
while the job runs (heartbeat), and clears it when the task ends. A task whose lease expired was left by a
dead worker and is claimed again, up to ``max_attempts`` runs; after that it is failed with
``TaskInterrupted`` instead of being tried forever. A graceful shutdown releases its leases, and does not
count the interrupted run.

Tasks sharing a ``serial_key`` run one at a time, oldest first: a task is claimable only when no other
task of its key holds a lease and (unless it holds a lease itself, expired) none older is waiting. Each
claim is one conditional UPDATE; the partial unique index ``uq_tasks_serial_key_leased`` (at most one
leased task per key) makes the rule hold even when two claims race on PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, exists, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import aliased

from immray.services.database import Database
from immray.services.tasks import LeaseLost, TaskRecord, finish_task
from immray.store import Dataset, Project, Task, TaskStatus, utcnow

INTERRUPTED_CODE = "TaskInterrupted"


@dataclass(frozen=True)
class Claim:
    """A task this worker now holds, with what its job needs."""

    task_id: str
    job_name: str
    payload: dict[str, Any]
    serial_key: str | None
    attempt: int


def _free(now: datetime):
    return or_(Task.lease_owner.is_(None), Task.lease_expires_at < now)


def _blocked():
    """Another task of the same key holds a lease, or, for a task without one, an older one waits."""
    other = aliased(Task)
    return and_(
        Task.serial_key.is_not(None),
        exists().where(
            other.serial_key == Task.serial_key,
            other.status == TaskStatus.RUNNING,
            other.id != Task.id,
            or_(other.lease_owner.is_not(None), and_(Task.lease_owner.is_(None), other.id < Task.id)),
        ),
    )


def claim(db: Database, task_id: str, *, owner: str, lease_seconds: float, max_attempts: int) -> Claim | None:
    """Take ``task_id`` for ``owner``, or None if it is not to be run by us now (ended, held by a live
    worker, behind another task of its key, or out of attempts)."""
    now = utcnow()
    try:
        with db.write() as session:
            row = session.execute(
                update(Task)
                .where(
                    Task.task_id == task_id,
                    Task.status == TaskStatus.RUNNING,
                    Task.job_name.is_not(None),
                    Task.attempts < max_attempts,
                    _free(now),
                    ~_blocked(),
                )
                .values(
                    lease_owner=owner,
                    lease_expires_at=now + timedelta(seconds=lease_seconds),
                    attempts=Task.attempts + 1,
                )
                .returning(Task.job_name, Task.job_payload, Task.serial_key, Task.attempts)
            ).first()
    except IntegrityError:  # another worker leased a task of the same key at the same moment
        return None
    if row is None:
        return None
    job_name, payload, serial_key, attempts = row
    return Claim(task_id, job_name, dict(payload or {}), serial_key, attempts)


def renew(db: Database, task_ids: Collection[str], *, owner: str, lease_seconds: float) -> set[str]:
    """Extend this worker's leases (the heartbeat); returns the ids whose lease it still held."""
    if not task_ids:
        return set()
    now = utcnow()
    with db.write() as session:
        rows = session.execute(
            update(Task)
            .where(
                Task.task_id.in_(list(task_ids)),
                Task.lease_owner == owner,
                Task.status == TaskStatus.RUNNING,
            )
            .values(lease_expires_at=now + timedelta(seconds=lease_seconds))
            .returning(Task.task_id)
        ).all()
    return {row[0] for row in rows}


def release(db: Database, task_id: str, *, owner: str) -> bool:
    """Give a task back at shutdown so the next worker runs it at once; the cut run is not counted."""
    with db.write() as session:
        row = session.execute(
            update(Task)
            .where(Task.task_id == task_id, Task.lease_owner == owner, Task.status == TaskStatus.RUNNING)
            .values(lease_owner=None, lease_expires_at=None, attempts=Task.attempts - 1)
            .returning(Task.id)
        ).first()
    return row is not None


def claimable(
    db: Database,
    *,
    job_names: Collection[str],
    max_attempts: int,
    limit: int = 100,
    serial_key: str | None = None,
) -> list[tuple[str, str]]:
    """(task_id, job_name) of tasks a worker knowing ``job_names`` may claim now (of ``serial_key`` only,
    when given), oldest first."""
    if not job_names:
        return []
    now = utcnow()
    with db.read() as session:
        query = (
            select(Task.task_id, Task.job_name)
            .where(
                Task.status == TaskStatus.RUNNING,
                Task.job_name.in_(list(job_names)),
                Task.attempts < max_attempts,
                _free(now),
                ~_blocked(),
            )
            .order_by(Task.id)
            .limit(limit)
        )
        if serial_key is not None:
            query = query.where(Task.serial_key == serial_key)
        rows = session.execute(query).all()
    return [(task_id, job_name) for task_id, job_name in rows]


def release_predecessors(db: Database, *, owner_prefix: str, owner: str) -> list[str]:
    """Free the leases still held by earlier lives of a runner that has one live instance at a time (a
    restarted dataset actor: Ray runs one actor of a name). Their runs died with them and stay counted, so
    a task that kills its runner every time still ends Failed after ``max_attempts``."""
    with db.write() as session:
        rows = session.execute(
            update(Task)
            .where(
                Task.status == TaskStatus.RUNNING,
                Task.lease_owner.startswith(owner_prefix, autoescape=True),
                Task.lease_owner != owner,
            )
            .values(lease_owner=None, lease_expires_at=None)
            .returning(Task.task_id),
            execution_options={"synchronize_session": False},
        ).all()
    return [row[0] for row in rows]


def route_of(db: Database, task_id: str) -> tuple[str | None, str | None, str | None]:
    """(serial key, project name, dataset name) of a task: which runner it belongs to."""
    with db.read() as session:
        row = session.execute(
            select(Task.serial_key, Project.name, Dataset.name)
            .join(Project, Project.id == Task.project_id)
            .outerjoin(Dataset, Dataset.id == Task.dataset_id)
            .where(Task.task_id == task_id)
        ).first()
    return (None, None, None) if row is None else (row[0], row[1], row[2])


def next_in_line(db: Database, serial_key: str, *, max_attempts: int) -> tuple[str, str] | None:
    """The task of ``serial_key`` that may run now (after one of its key ended), if any."""
    now = utcnow()
    with db.read() as session:
        row = session.execute(
            select(Task.task_id, Task.job_name)
            .where(
                Task.serial_key == serial_key,
                Task.status == TaskStatus.RUNNING,
                Task.job_name.is_not(None),
                Task.attempts < max_attempts,
                _free(now),
                ~_blocked(),
            )
            .order_by(Task.id)
            .limit(1)
        ).first()
    return None if row is None else (row[0], row[1])


def fail_exhausted(db: Database, *, max_attempts: int) -> list[TaskRecord]:
    """Fail the tasks whose every allowed run was cut short (their last lease expired too)."""
    now = utcnow()
    with db.read() as session:
        ids = session.scalars(
            select(Task.task_id).where(
                Task.status == TaskStatus.RUNNING,
                Task.job_name.is_not(None),
                Task.attempts >= max_attempts,
                _free(now),
            )
        ).all()
    failed = []
    for task_id in ids:
        try:
            with db.write() as session:
                attempts = session.scalar(select(Task.attempts).where(Task.task_id == task_id))
                failed.append(
                    finish_task(
                        session,
                        task_id,
                        owner=None,
                        status=TaskStatus.FAILED,
                        code=INTERRUPTED_CODE,
                        message=f"The task was interrupted {attempts} times (the worker running it "
                        "stopped before it ended) and is not run again.",
                    )
                )
        except LeaseLost:  # ended or renewed meanwhile
            continue
    return failed
