"""How background work runs on Ray, from the ingress replica's side.

``RayJobBackend`` is the job backend (``immray.jobs.submit``) of every ingress replica:

- a task job (clustering, merging) goes to its dataset's actor (``immray.actors.dataset``), which runs the
  dataset's tasks one after the other;
- an ``index-file`` job runs in this replica's indexing threads: read the photo (``sources``), send its
  bytes to the analysis deployment (batched there; ``serve.analysis_client``), store the faces. The files table is their durable
  queue: Pending files are sent again when a replica starts (``PendingFilesRecovery``).

``TaskSweeper`` is the safety net: every ``task_poll_seconds`` it fails the tasks whose every run was cut
short, sends the claimable ones (left by a dead actor, or queued behind another task) to their actors,
and purges finished tasks past retention once an hour.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from immray.actors.dataset import actor_name, dataset_actor
from immray.jobs.catalog import load_jobs
from immray.jobs.registry import get_job, job_names
from immray.jobs.runner import JobRunner
from immray.jobs.submission import install_backend, uninstall_backend
from immray.serve.analysis_client import ServeFaceAnalysis
from immray.services import task_leases
from immray.services.database import Database
from immray.services.tasks import purge_finished_tasks
from immray.settings import Settings

log = logging.getLogger("immray.jobs")

PURGE_EVERY_SECONDS = 3600.0


class RayJobBackend:
    """The job backend of an ingress replica (installed while the replica runs)."""

    name = "Ray job backend"

    def __init__(
        self, db: Database, settings: Settings, analysis: Any, actor_options: dict[str, Any] | None = None
    ) -> None:
        self._db = db
        self._settings = settings
        self._actor_options = actor_options or {}
        self._pool: ThreadPoolExecutor | None = None
        self._runner = JobRunner(
            db=db, settings=settings, owner="ingress", submit=self.submit, faces=ServeFaceAnalysis(analysis)
        )

    def start(self) -> None:
        load_jobs()
        self._pool = ThreadPoolExecutor(
            self._settings.indexing_concurrency, thread_name_prefix="immray-index"
        )
        install_backend(self)

    def stop(self) -> None:
        uninstall_backend(self)
        pool, self._pool = self._pool, None
        if pool is not None:  # the photos not analysed yet stay Pending, sent again at the next start
            self._runner.stopping.set()
            pool.shutdown(wait=True, cancel_futures=True)

    def submit(self, job_name: str, payload: dict[str, Any]) -> None:
        spec = get_job(job_name)
        if spec is not None and spec.task:
            self.send_task(str(payload["task_id"]), job_name)
            return
        pool = self._pool
        if pool is None:
            raise RuntimeError(f"the ingress is stopping; {job_name} waits for the next start")
        pool.submit(self._runner.run, job_name, payload)

    def send_task(self, task_id: str, job_name: str) -> None:
        """Hand a task to its dataset's actor (created on first use)."""
        serial_key, project, dataset = task_leases.route_of(self._db, task_id)
        key = serial_key or "tasks"
        # Looked up (or made) each time: an actor that exited while idle is made again. A task sent in the
        # moment its actor exits stays in the table, and the sweeper sends it again.
        actor = dataset_actor(
            self._settings,
            name=actor_name(project, dataset, key),
            serial_key=key,
            options=self._actor_options,
        )
        actor.submit.remote(task_id, job_name)


class TaskSweeper:
    """A background service of the ingress: see the module's docstring."""

    name = "task sweeper"

    def __init__(
        self,
        db: Database,
        settings: Settings,
        send: Callable[[str, str], None],
        after_fail: Callable[[], None] | None = None,
    ) -> None:
        """``send(task_id, job_name)`` hands a task to its runner (``RayJobBackend.send_task``)."""
        self._db = db
        self._settings = settings
        self._send = send
        self._after_fail = after_fail
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_purge: float | None = None

    def start(self) -> None:
        self._stopping.clear()
        self._thread = threading.Thread(target=self._loop, name="immray-sweeper", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

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
            log.error("task %s failed: %s", record.task_id, record.message)
            if self._after_fail is not None:
                self._after_fail()
        claimable = task_leases.claimable(
            self._db, job_names=job_names(task=True), max_attempts=settings.task_max_attempts
        )
        for task_id, job_name in claimable:
            self._send(task_id, job_name)
        if self._last_purge is None or time.monotonic() - self._last_purge >= PURGE_EVERY_SECONDS:
            self._last_purge = time.monotonic()
            purged = purge_finished_tasks(self._db, retention_days=settings.task_retention_days)
            if purged:
                log.info("purged %d task(s) older than %s days", purged, settings.task_retention_days)
