"""The server's side of the scale-out mode: jobs go to the broker, and a sweeper watches the task table.

:class:`CeleryBackend` is the job backend of a server configured with a broker: ``submit`` sends the job
to its queue and returns. The task table stays the truth about tasks, as with the embedded pool, and the
:class:`TaskSweeper` does for the Celery workers what the pool's sweeper does for its threads: it fails
tasks whose every run was cut short, and sends again the tasks no worker holds although they may run (a
worker died and its lease expired; the broker lost the message; the worker that ended a dataset's task
died before handing on the next one). It cannot see what is already waiting in a queue, so it sends a
task again only after it stayed unclaimed for a while, and waits twice as long after each try: a long
queue then gets a few duplicates at most, which the workers skip (the lease is taken).

Photo analyses need no sweeper: a Pending file is its own durable record, and the server sends the
Pending files' analyses again when it starts (``PendingFilesRecovery``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from immray.jobs.catalog import load_jobs
from immray.jobs.celery_app import Queues, broker_kind, display_url, make_celery, send
from immray.jobs.registry import get_job, job_names
from immray.jobs.submission import install_backend, uninstall_backend
from immray.services import task_leases
from immray.services.database import Database
from immray.services.tasks import purge_finished_tasks
from immray.settings import Settings

log = logging.getLogger("immray.jobs")

PURGE_EVERY_SECONDS = 3600.0
RESEND_MAX_SECONDS = 600.0


class ScaleOutError(RuntimeError):
    """The scale-out mode cannot start; the message says why."""


def check_scale_out(settings: Settings) -> None:
    """The scale-out mode shares one PostgreSQL database between the server and every worker."""
    from immray.store import DatabaseURLError, normalize_url

    if not settings.broker_url:
        raise ScaleOutError(
            "the scale-out mode needs a broker: set IMMRAY_BROKER_URL (redis:// or amqp://)"
        )
    try:
        backend = normalize_url(settings.resolved_database_url).get_backend_name()
    except DatabaseURLError as exc:
        raise ScaleOutError(str(exc)) from None
    if backend != "postgresql":
        raise ScaleOutError(
            "the scale-out mode (IMMRAY_BROKER_URL) needs a PostgreSQL database shared by the server and "
            "every worker: set IMMRAY_DATABASE_URL=postgresql+psycopg://..."
        )


def check_broker(settings: Settings) -> None:
    """Connect to the broker once, so a wrong URL or a broker that is down is said at start."""
    app = make_celery(settings)
    try:
        with app.connection_for_write() as connection:
            connection.ensure_connection(max_retries=2, interval_start=0.5, interval_step=0.5)
    except Exception as exc:
        raise ScaleOutError(
            f"cannot reach the broker {display_url(settings.broker_url or '')}: {exc}"
        ) from None
    finally:
        app.close()


class SentTasks:
    """When each unclaimed task was last sent, so the sweeper sends it again only after a growing wait."""

    def __init__(self, base_seconds: float) -> None:
        self._base = base_seconds
        self._sent: dict[str, tuple[float, int]] = {}
        self._lock = threading.Lock()

    def sent(self, task_id: str) -> None:
        with self._lock:
            _, tries = self._sent.get(task_id, (0.0, -1))
            self._sent[task_id] = (time.monotonic(), tries + 1)

    def due(self, task_id: str) -> bool:
        """Sent long enough ago (or never, by this process) to be sent again."""
        with self._lock:
            found = self._sent.get(task_id)
        if found is None:
            return True
        at, tries = found
        return time.monotonic() - at >= min(RESEND_MAX_SECONDS, self._base * 2**tries)

    def keep_only(self, task_ids: set[str]) -> None:
        """Forget the tasks that are no longer waiting (claimed, ended)."""
        with self._lock:
            for task_id in [known for known in self._sent if known not in task_ids]:
                del self._sent[task_id]


class CeleryBackend:
    """The job backend of a scale-out server (a background service: ``start`` installs it)."""

    name = "celery job backend"

    def __init__(self, settings: Settings, db: Database, sent: SentTasks | None = None) -> None:
        self._settings = settings
        self._db = db
        self._sent = sent or SentTasks(settings.task_lease_seconds)
        self._app: Any = None
        self._queues = Queues.of(settings)

    def start(self) -> None:
        check_scale_out(self._settings)
        check_broker(self._settings)
        load_jobs()
        self._app = make_celery(self._settings)
        install_backend(self)
        shown = display_url(self._settings.broker_url or "")
        log.info("jobs go to Celery workers through %s (%s)", shown, broker_kind(shown))

    def stop(self) -> None:
        uninstall_backend(self)
        if self._app is not None:
            self._app.close()
            self._app = None

    def submit(self, job_name: str, payload: dict[str, Any]) -> None:
        """Send the job to its queue. A task job the broker refused is left to the sweeper (the task table
        keeps it); any other job raises RuntimeError, as when no backend runs."""
        spec = get_job(job_name)
        task_id = payload.get("task_id") if spec is not None and spec.task else None
        if task_id is not None:  # first, so the sweeper never takes it for one nobody sent
            self._sent.sent(str(task_id))
        try:
            send(self._app, self._queues, job_name, payload)
        except Exception as exc:
            if task_id is None:
                raise RuntimeError(f"the broker refused job {job_name}: {exc}") from exc
            log.warning("the broker refused task %s (%s); the sweeper sends it again", task_id, exc)


class TaskSweeper:
    """Background service of a scale-out server: fails exhausted tasks, sends waiting ones again, purges."""

    name = "task sweeper"

    def __init__(
        self,
        db: Database,
        settings: Settings,
        submit: Callable[[str, dict[str, Any]], None],
        sent: SentTasks,
        *,
        after_task: Callable[[], None] | None = None,
    ) -> None:
        self._db = db
        self._settings = settings
        self._submit = submit
        self._sent = sent
        self._after_task = after_task
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_purge: float | None = None

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stopping.clear()
        self._thread = threading.Thread(target=self._loop, name="immray-task-sweeper", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                self.sweep()
            except Exception:
                log.exception("the task sweeper failed; it tries again")
            self._stopping.wait(self._settings.task_poll_seconds)

    def sweep(self) -> None:
        settings = self._settings
        for record in task_leases.fail_exhausted(self._db, max_attempts=settings.task_max_attempts):
            log.error("task %s failed: %s", record.task_id, record.message, extra={"task_id": record.task_id})
            if self._after_task is not None:
                self._after_task()
        waiting = task_leases.claimable(
            self._db, job_names=job_names(task=True), max_attempts=settings.task_max_attempts
        )
        self._sent.keep_only({task_id for task_id, _ in waiting})
        for task_id, job_name in waiting:
            if self._sent.due(task_id):
                log.info("task %s waits unclaimed; sent again", task_id, extra={"task_id": task_id})
                self._submit(job_name, {"task_id": task_id})
        if self._last_purge is None or time.monotonic() - self._last_purge >= PURGE_EVERY_SECONDS:
            self._last_purge = time.monotonic()
            purged = purge_finished_tasks(self._db, retention_days=settings.task_retention_days)
            if purged:
                log.info("purged %d task(s) older than %s days", purged, settings.task_retention_days)


def scale_out_services(
    db: Database, settings: Settings, *, after_task: Callable[[], None] | None = None
) -> list[Any]:
    """The background services a scale-out server runs instead of the local pool, in start order."""
    sent = SentTasks(settings.task_lease_seconds)
    backend = CeleryBackend(settings, db, sent)
    return [backend, TaskSweeper(db, settings, backend.submit, sent, after_task=after_task)]
