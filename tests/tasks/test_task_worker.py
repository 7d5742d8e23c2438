"""The task runtime in this process, on a real database: ``TaskWorker`` (what each dataset actor runs: one
task at a time, leases kept alive by its heartbeat, handed back at stop) and ``TaskSweeper`` (the ingress's
safety net: sends claimable tasks, fails exhausted ones, purges old ones), with the test jobs of
``task_jobs``. What the dataset actors add on Ray (restarts, redeploys) is in test_task_restart.py.
"""

from __future__ import annotations

import contextlib
import json
import threading
import uuid
from collections.abc import Iterator
from datetime import timedelta

import pytest
import task_jobs
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from immray.jobs import submit
from immray.jobs.task_worker import TaskWorker
from immray.serve.jobs import RayJobBackend, TaskSweeper
from immray.services import task_leases, tasks
from immray.services.tasks import NewTask, TaskRecord
from immray.store import OutboxMessage, Task, utcnow
from task_testkit import add_dataset, make_settings, wait_for


@pytest.fixture
def settings(db_url, tmp_path):
    return make_settings(db_url, tmp_path)


class Runtime:
    """One started ``TaskWorker`` per serial key, as the dataset actors are one per dataset, and the
    sweeper that sends each task to its key's worker (as ``RayJobBackend.send_task`` routes to actors)."""

    def __init__(self, db, settings) -> None:
        self.db, self.settings = db, settings
        self.workers: dict[str, TaskWorker] = {}
        self.failed_rounds = 0  # the sweeper's after_fail calls (the ingress wakes the outbox with it)
        self._lock = threading.Lock()
        self.sweeper = TaskSweeper(db, settings, self.send, after_fail=self._after_fail)

    def worker(self, serial_key: str = "dataset:1") -> TaskWorker:
        with self._lock:
            if serial_key not in self.workers:
                worker = TaskWorker(self.db, self.settings, owner=f"test:{serial_key}#{uuid.uuid4().hex[:8]}")
                worker.start()
                self.workers[serial_key] = worker
            return self.workers[serial_key]

    def send(self, task_id: str, job_name: str) -> None:
        serial_key, _, _ = task_leases.route_of(self.db, task_id)
        self.worker(serial_key or "tasks").submit(job_name, {"task_id": task_id})

    def _after_fail(self) -> None:
        self.failed_rounds += 1

    def stop(self, timeout: float = 10.0) -> None:
        self.sweeper.stop()
        for worker in self.workers.values():
            worker.stop(timeout=timeout)


@contextlib.contextmanager
def running(db, settings, *, sweeping: bool = True) -> Iterator[Runtime]:
    runtime = Runtime(db, settings)
    if sweeping:
        runtime.sweeper.start()
    try:
        yield runtime
    finally:
        runtime.stop()


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
    return tasks.start_task(db, new)  # no job backend here: the sweeper sends it


def read(db, record: TaskRecord) -> TaskRecord:
    return tasks.get_task(db, "proj", record.task_type, record.task_id, retention_days=7)


def row(db, record: TaskRecord) -> Task:
    with db.read() as session:
        found = session.scalars(select(Task).where(Task.task_id == record.task_id)).one()
        session.expunge(found)
        return found


def ended(db, record: TaskRecord) -> TaskRecord:
    return wait_for(
        f"task {record.task_id} to end", lambda: (r := read(db, record)).status != "Running" and r
    )


def gate() -> str:
    return f"gate-{uuid.uuid4().hex}"


@pytest.fixture(autouse=True)
def _dataset(db):
    add_dataset(db)
    yield
    for event in list(task_jobs.GATES.values()):  # a failed test leaves no job blocked
        event.set()


def test_a_task_runs_to_success_with_its_result_and_progress(db, settings):
    name = gate()
    with running(db, settings):
        record = start(db, {"gate": name, "steps": 4, "echo": "hi"})
        running_now = wait_for("progress 50", lambda: (r := read(db, record)).progress == 50 and r)
        assert running_now.status == "Running" and running_now.end_time is None
        task_jobs.GATES[name].set()
        done = ended(db, record)
    assert (done.status, done.progress, done.code, done.message) == ("Succeeded", 100, None, None)
    assert done.result == {"Attempt": 1, "Echo": "hi"} and done.attempts == 1
    assert done.end_time >= done.start_time
    assert row(db, record).lease_owner is None


def test_a_job_may_end_its_task_in_its_own_transaction(db, settings):
    with running(db, settings):
        done = ended(db, start(db, {"value": 7}, job="test.finish-in-transaction"))
    assert (done.status, done.result) == ("Succeeded", {"Written": 7})


def test_a_refusal_keeps_its_code_and_a_bug_is_an_internal_error_without_details(db, settings):
    with running(db, settings):
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
    with running(db, settings) as runtime:
        first = start(db, {"gate": first_gate})
        wait_for("the first task to run", lambda: read(db, first).progress == 50)
        second = start(db, {"echo": 2})
        third = start(db, {"echo": 3})
        elsewhere = ended(db, start(db, {"echo": "x"}, serial_key="dataset:2"))
        assert elsewhere.status == "Succeeded"  # while the first task of dataset:1 still runs
        runtime.sweeper.sweep()  # the sweeper looked at the waiting tasks and left them alone
        assert [read(db, r).attempts for r in (second, third)] == [0, 0]
        assert read(db, second).status == "Running"
        worker = runtime.worker("dataset:1")
        assert worker.status()["running"] == [first.task_id]
        assert worker.submit("test.work", {"task_id": first.task_id}) is False  # sent again: runs once
        task_jobs.GATES[first_gate].set()
        results = [ended(db, r) for r in (first, second, third)]
    assert [r.status for r in results] == ["Succeeded"] * 3
    assert [r.attempts for r in results] == [1, 1, 1]
    order = [(what, task_id) for what, task_id in task_jobs.EVENTS if task_id in {r.task_id for r in results}]
    assert order == [(what, r.task_id) for r in (first, second, third) for what in ("start", "end")]
    assert sorted(runtime.workers) == ["dataset:1", "dataset:2"]


def test_the_database_lets_one_task_per_key_hold_a_lease(db, settings):
    first, second = start(db), start(db)
    claim = task_leases.claim(db, first.task_id, owner="a", lease_seconds=60, max_attempts=3)
    assert claim is not None and claim.attempt == 1 and claim.serial_key == "dataset:1"
    assert task_leases.claim(db, second.task_id, owner="b", lease_seconds=60, max_attempts=3) is None
    with pytest.raises(IntegrityError), db.write() as session:  # even a write that skips the rule
        session.execute(update(Task).where(Task.task_id == second.task_id).values(lease_owner="b"))
    assert task_leases.claim(db, first.task_id, owner="b", lease_seconds=60, max_attempts=3) is None


def test_the_heartbeat_keeps_a_long_task_s_lease(db, settings):
    name = gate()
    with running(db, settings) as runtime:
        record = start(db, {"gate": name})
        wait_for("the task to run", lambda: read(db, record).progress == 50)
        first = row(db, record)
        # Past the lease the task was claimed with: renewed meanwhile, so the sweeper never took it back.
        later = wait_for(
            "a lease's time to pass",
            lambda: (
                (r := row(db, record)).lease_expires_at > first.lease_expires_at
                and utcnow() > first.lease_expires_at
                and r
            ),
        )
        assert (later.lease_owner, later.attempts) == (runtime.worker().owner, 1)
        task_jobs.GATES[name].set()
        done = ended(db, record)
    assert (done.status, done.attempts) == ("Succeeded", 1)


def test_a_task_whose_lease_went_to_another_runner_is_left_to_it(db, settings):
    name = gate()
    with running(db, settings, sweeping=False) as runtime:
        record = start(db, {"gate": name})
        runtime.send(record.task_id, "test.work")
        wait_for("the task to run", lambda: read(db, record).progress == 50)
        worker = runtime.worker()
        # This runner stalled; another took the task over (its lease expired, a sweeper sent it on).
        with db.write() as session:
            session.execute(
                update(Task)
                .where(Task.task_id == record.task_id)
                .values(lease_owner="other", lease_expires_at=utcnow() + timedelta(minutes=5))
            )
        wait_for("the heartbeat to see the loss", lambda: worker.status()["running"] == [])
        assert ("end", record.task_id) in task_jobs.EVENTS  # the job stopped at its next check
        task_jobs.GATES[name].set()
    left = row(db, record)
    assert (left.status, left.lease_owner, left.attempts, left.progress) == ("Running", "other", 1, 50)


def test_a_task_left_by_a_dead_worker_runs_again_when_its_lease_expires(db, settings):
    record = start(db, {"echo": "again"})
    assert task_leases.claim(db, record.task_id, owner="dead", lease_seconds=0.3, max_attempts=3)
    with running(db, settings):
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
    with running(db, settings) as runtime:
        done = ended(db, record)
    assert (done.status, done.code) == ("Failed", "TaskInterrupted")
    assert "interrupted 3 times" in done.message
    assert runtime.failed_rounds == 1 and runtime.workers == {}  # failed by the sweeper, never run
    with db.read() as session:
        message = session.scalars(select(OutboxMessage)).one()
    assert json.loads(message.payload["content"])["Code"] == "TaskInterrupted"


def test_stopping_a_worker_hands_a_running_task_back_without_counting_the_run(db, settings):
    name = gate()
    record = start(db, {"gate": name})
    with running(db, settings) as runtime:
        wait_for("the task to run", lambda: read(db, record).progress == 50)
        assert runtime.worker().status() == {"running": [record.task_id], "queued": []}
    left = row(db, record)
    assert (left.status, left.lease_owner, left.attempts) == ("Running", None, 0)
    task_jobs.GATES[name].set()
    with running(db, settings):  # the next start runs it at once
        done = ended(db, record)
    assert (done.status, done.attempts) == ("Succeeded", 1)


def test_tasks_submitted_while_no_worker_runs_wait_in_the_table(db, settings):
    record = start(db, {"echo": "later"})  # start_task submitted it: no backend, kept in the table
    assert read(db, record).attempts == 0
    with running(db, settings):
        assert ended(db, record).result == {"Attempt": 1, "Echo": "later"}


def test_the_sweeper_purges_tasks_past_retention_once_an_hour(db, settings):
    old, recent, later = (start(db, serial_key=None, job=None) for _ in range(3))
    ended_at = {old.task_id: utcnow() - timedelta(days=8), recent.task_id: utcnow() - timedelta(days=6)}
    with db.write() as session:
        for task_id, end_time in ended_at.items():
            session.execute(
                update(Task).where(Task.task_id == task_id).values(status="Succeeded", end_time=end_time)
            )
    sweeper = Runtime(db, settings).sweeper
    sweeper.sweep()

    def present() -> set[str]:
        with db.read() as session:
            return set(session.scalars(select(Task.task_id)))

    assert present() == {recent.task_id, later.task_id}
    with db.write() as session:  # ended long ago too, but the next purge is an hour away
        session.execute(
            update(Task)
            .where(Task.task_id == later.task_id)
            .values(status="Failed", end_time=utcnow() - timedelta(days=30))
        )
    sweeper.sweep()
    assert present() == {recent.task_id, later.task_id}


def test_plain_jobs_run_from_submit_and_need_a_backend(db, settings):
    marker = uuid.uuid4().hex
    with pytest.raises(RuntimeError, match="no job backend"):
        submit("test.plain", {"marker": marker})
    with pytest.raises(ValueError, match="no job is registered"):
        submit("test.unknown", {})
    backend = RayJobBackend(db, settings, analysis=None)  # the ingress's backend; plain jobs need no Ray
    backend.start()
    try:
        with pytest.raises(ValueError, match="not JSON"):
            submit("test.plain", {"marker": object()})
        submit("test.plain", {"marker": marker})
        wait_for("the plain job", lambda: ("plain", marker) in task_jobs.EVENTS)
    finally:
        backend.stop()
    with pytest.raises(RuntimeError, match="no job backend"):
        submit("test.plain", {"marker": marker})
