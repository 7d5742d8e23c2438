"""The local worker pool on a real database: runs, failures, progress, serial keys, leases, shutdown."""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Iterator
from datetime import timedelta

import pytest
import task_jobs
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from immray.jobs import submit
from immray.jobs.local import LocalWorkerPool
from immray.services import task_leases, tasks
from immray.services.tasks import NewTask, TaskRecord
from immray.store import OutboxMessage, Task, utcnow
from task_testkit import add_dataset, make_settings, wait_for


@pytest.fixture
def settings(db_url, tmp_path):
    return make_settings(db_url, tmp_path, worker_threads=3)


@contextlib.contextmanager
def running_pool(db, settings, **options) -> Iterator[LocalWorkerPool]:
    pool = LocalWorkerPool(db, settings, **options)
    pool.start()
    try:
        yield pool
    finally:
        pool.stop(timeout=10)


def start(db, payload=None, *, serial_key="dataset:1", job="test.work", **values) -> TaskRecord:
    new = NewTask(
        project_name="proj",
        dataset_name="ds",
        task_type="FaceClustering",
        job_name=job,
        job_payload=payload or {},
        serial_key=serial_key,
        **values,
    )
    return tasks.start_task(db, new)


def read(db, record: TaskRecord) -> TaskRecord:
    return tasks.get_task(db, "proj", record.task_type, record.task_id, retention_days=7)


def ended(db, record: TaskRecord) -> TaskRecord:
    return wait_for(
        f"task {record.task_id} to end", lambda: (r := read(db, record)).status != "Running" and r
    )


def gate() -> str:
    return f"gate-{uuid.uuid4().hex}"


@pytest.fixture(autouse=True)
def _dataset(db):
    add_dataset(db)


def test_a_task_runs_to_success_with_its_result_and_progress(db, settings):
    name = gate()
    with running_pool(db, settings):
        record = start(db, {"gate": name, "steps": 4, "echo": "hi"})
        running = wait_for("progress 50", lambda: (r := read(db, record)).progress == 50 and r)
        assert running.status == "Running" and running.end_time is None
        task_jobs.GATES[name].set()
        done = ended(db, record)
    assert (done.status, done.progress, done.code, done.message) == ("Succeeded", 100, None, None)
    assert done.result == {"Attempt": 1, "Echo": "hi"} and done.attempts == 1
    assert done.end_time >= done.start_time


def test_a_job_may_end_its_task_in_its_own_transaction(db, settings):
    with running_pool(db, settings):
        done = ended(db, start(db, {"value": 7}, job="test.finish-in-transaction"))
    assert (done.status, done.result) == ("Succeeded", {"Written": 7})


def test_a_refusal_keeps_its_code_and_a_bug_is_an_internal_error_without_details(db, settings):
    with running_pool(db, settings):
        refused = ended(db, start(db, {"raise": "imm"}, serial_key=None))
        crashed = ended(db, start(db, {"raise": "bug"}, serial_key=None))
    assert (refused.status, refused.code, refused.message) == (
        "Failed",
        "InvalidArgument",
        "The photo library is on fire.",
    )
    assert (crashed.status, crashed.code) == ("Failed", "InternalError")
    assert "RuntimeError" in crashed.message and "hunter2" not in crashed.message


def test_tasks_of_one_key_run_one_at_a_time_in_order_and_other_keys_do_not_wait(db, settings):
    first_gate = gate()
    with running_pool(db, settings) as pool:
        first = start(db, {"gate": first_gate})
        wait_for("the first task to run", lambda: read(db, first).progress == 50)
        second = start(db, {"echo": 2})
        third = start(db, {"echo": 3})
        elsewhere = ended(db, start(db, {"echo": "x"}, serial_key="dataset:2"))
        assert elsewhere.status == "Succeeded"  # while the first task of dataset:1 still runs
        pool.sweep()  # the sweeper looked at the waiting tasks and left them alone
        assert [read(db, r).attempts for r in (second, third)] == [0, 0]
        assert read(db, second).status == "Running"
        task_jobs.GATES[first_gate].set()
        results = [ended(db, r) for r in (first, second, third)]
    assert [r.status for r in results] == ["Succeeded"] * 3
    order = [(what, task_id) for what, task_id in task_jobs.EVENTS if task_id in {r.task_id for r in results}]
    assert order == [(what, r.task_id) for r in (first, second, third) for what in ("start", "end")]


def test_the_database_lets_one_task_per_key_hold_a_lease(db, settings):
    first, second = start(db), start(db)
    claim = task_leases.claim(db, first.task_id, owner="a", lease_seconds=60, max_attempts=3)
    assert claim is not None and claim.attempt == 1 and claim.serial_key == "dataset:1"
    assert task_leases.claim(db, second.task_id, owner="b", lease_seconds=60, max_attempts=3) is None
    with pytest.raises(IntegrityError), db.write() as session:  # even a write that skips the rule
        session.execute(update(Task).where(Task.task_id == second.task_id).values(lease_owner="b"))
    assert task_leases.claim(db, first.task_id, owner="b", lease_seconds=60, max_attempts=3) is None


def test_a_task_left_by_a_dead_worker_runs_again_when_its_lease_expires(db, settings):
    record = start(db, {"echo": "again"})
    assert task_leases.claim(db, record.task_id, owner="dead", lease_seconds=0.3, max_attempts=3)
    with running_pool(db, settings):
        done = ended(db, record)
    assert (done.status, done.attempts, done.result["Attempt"]) == ("Succeeded", 2, 2)


def test_a_task_whose_every_run_was_cut_short_fails_with_a_clear_code(db, settings):
    record = start(db, notification={"MNS": {"TopicName": "t"}})
    with db.write() as session:
        session.execute(
            update(Task).values(
                attempts=3, lease_owner="dead", lease_expires_at=utcnow() - timedelta(seconds=1)
            )
        )
    with running_pool(db, settings):
        done = ended(db, record)
    assert (done.status, done.code) == ("Failed", "TaskInterrupted")
    assert "interrupted 3 times" in done.message
    with db.read() as session:
        message = session.scalars(select(OutboxMessage)).one()
    assert json.loads(message.payload["content"])["Code"] == "TaskInterrupted"


def test_stopping_the_pool_hands_a_running_task_back_without_counting_the_run(db, settings):
    name = gate()
    record = start(db, {"gate": name})
    with running_pool(db, settings) as pool:
        wait_for("the task to run", lambda: read(db, record).progress == 50)
        assert pool.running_tasks() == [record.task_id]
    with db.read() as session:
        row = session.scalars(select(Task)).one()
        assert (row.status, row.lease_owner, row.attempts) == ("Running", None, 0)
    task_jobs.GATES[name].set()
    with running_pool(db, settings):  # the next start runs it at once
        done = ended(db, record)
    assert (done.status, done.attempts) == ("Succeeded", 1)


def test_tasks_submitted_while_no_pool_runs_wait_in_the_table(db, settings):
    record = start(db, {"echo": "later"})  # start_task submitted it: no backend, kept in the table
    assert read(db, record).attempts == 0
    with running_pool(db, settings):
        assert ended(db, record).result == {"Attempt": 1, "Echo": "later"}


def test_plain_jobs_run_from_submit_and_need_a_backend(db, settings):
    marker = uuid.uuid4().hex
    with pytest.raises(RuntimeError, match="no job backend"):
        submit("test.plain", {"marker": marker})
    with pytest.raises(ValueError, match="no job is registered"):
        submit("test.unknown", {})
    with running_pool(db, settings):
        with pytest.raises(ValueError, match="not JSON"):
            submit("test.plain", {"marker": object()})
        submit("test.plain", {"marker": marker})
        wait_for("the plain job", lambda: ("plain", marker) in task_jobs.EVENTS)
