"""The embedded default: a pool of worker threads in the server process, fed by submissions and by the
task table.

Threads share one database engine and run the jobs' database work, numpy and faiss (which release the
GIL). dlib does not release it, so the photos' face analysis leaves the threads for child processes, one per
thread, each with its own copy of the models (jobs.face_analysis): every core analyses photos. A job that
holds the GIL for long (pure Python loops) slows the API thread, so jobs keep such loops small.

Beside the workers run two helper threads. The heartbeat renews the leases of the running tasks every
third of ``task_lease_seconds`` and flags a task whose lease was lost. The sweeper, every
``task_poll_seconds`` (and right after start), fails tasks whose allowed runs were all cut short, queues
every claimable task (those left Running by a process that died, those submitted while no pool ran, those
that waited behind another task of their serial key), and purges tasks past retention once an hour. A task
cut short by a crash therefore runs again at most one lease after the crash.
"""

from __future__ import annotations

import logging
import os
import queue
import socket
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from immray.jobs.catalog import load_jobs
from immray.jobs.context import JobContext
from immray.jobs.face_analysis import ChildProcessAnalysis
from immray.jobs.registry import get_job, job_names
from immray.jobs.runner import JobRunner
from immray.jobs.submission import install_backend, uninstall_backend
from immray.services import task_leases
from immray.services.database import Database
from immray.services.tasks import purge_finished_tasks
from immray.settings import Settings

log = logging.getLogger("immray.jobs")

PURGE_EVERY_SECONDS = 3600.0
_STOP = object()


def worker_name() -> str:
    """A lease owner name unique to this process: host, pid and a random part (pids are reused)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class LocalWorkerPool:
    """``start()`` makes it the job backend and starts its threads; ``stop()`` hands running tasks back."""

    name = "local worker pool"

    def __init__(
        self,
        db: Database,
        settings: Settings,
        *,
        threads: int | None = None,
        owner: str | None = None,
        after_task: Callable[[], None] | None = None,
    ) -> None:
        self._db = db
        self._settings = settings
        self._threads = threads or settings.worker_threads or os.cpu_count() or 1
        self.owner = owner or worker_name()
        self._after_task = after_task
        self._queue: queue.Queue[Any] = queue.Queue()
        self._queued: set[str] = set()  # task ids queued or running here, so the sweeper adds none twice
        self._running: dict[str, JobContext] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._wake = threading.Event()
        self._workers: list[threading.Thread] = []
        self._helpers: list[threading.Thread] = []
        self._last_purge: float | None = None
        # dlib holds the GIL: the threads analyse photos in as many child processes (jobs.face_analysis)
        self._faces = ChildProcessAnalysis(settings, processes=self._threads)
        self._runner = JobRunner(
            db=db,
            settings=settings,
            owner=self.owner,
            submit=self.submit,
            stopping=self._stopping,
            on_start=self._started,
            on_end=self._ended,
            faces=self._faces,
        )

    # --- the backend interface ----------------------------------------------------------------------

    def submit(self, job_name: str, payload: dict[str, Any]) -> None:
        spec = get_job(job_name)
        task_id = payload.get("task_id") if spec is not None and spec.task else None
        if task_id is not None:
            with self._lock:
                if task_id in self._queued:
                    return
                self._queued.add(task_id)
        self._queue.put((job_name, payload))

    # --- lifecycle ----------------------------------------------------------------------------------

    def start(self) -> None:
        if self._workers:
            return
        load_jobs()
        self._stopping.clear()
        install_backend(self)
        for number in range(self._threads):
            thread = threading.Thread(target=self._work, name=f"immray-worker-{number}", daemon=True)
            thread.start()
            self._workers.append(thread)
        for target, name in ((self._heartbeat, "heartbeat"), (self._sweep_loop, "sweeper")):
            thread = threading.Thread(target=target, name=f"immray-{name}", daemon=True)
            thread.start()
            self._helpers.append(thread)
        log.info("local worker pool %s started with %d thread(s)", self.owner, self._threads)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop taking work; running jobs are asked to stop (``ctx.check``) and waited for up to
        ``timeout`` seconds; the tasks still running then are handed back for the next start."""
        uninstall_backend(self)
        self._stopping.set()
        self._wake.set()
        for _ in self._workers:
            self._queue.put(_STOP)
        deadline = time.monotonic() + timeout
        for thread in self._workers + self._helpers:
            thread.join(max(0.0, deadline - time.monotonic()))
        self._faces.close()  # after the threads: the analyses they waited for have ended
        with self._lock:
            left = list(self._running.values())
        for ctx in left:  # a job that ignores check(): its late end will find the lease gone
            if ctx.task_id is not None and task_leases.release(self._db, ctx.task_id, owner=self.owner):
                log.warning("task %s still running at shutdown; handed back", ctx.task_id)
        self._workers, self._helpers = [], []
        with self._lock:  # what was queued stays in the task table for the next start
            self._queue = queue.Queue()
            self._queued.clear()
        log.info("local worker pool %s stopped", self.owner)

    def running_tasks(self) -> list[str]:
        with self._lock:
            return sorted(self._running)

    # --- threads ------------------------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP or self._stopping.is_set():
                return
            job_name, payload = item
            try:
                self._runner.run(job_name, payload)
            except Exception:  # the database was away; the sweeper queues the task again
                log.exception("running job %s failed", job_name)
            finally:
                task_id = payload.get("task_id")
                if task_id is not None:
                    with self._lock:
                        self._queued.discard(task_id)
                if self._after_task is not None:
                    self._after_task()

    def _started(self, ctx: JobContext) -> None:
        with self._lock:
            self._running[ctx.task_id or ""] = ctx

    def _ended(self, ctx: JobContext) -> None:
        with self._lock:
            self._running.pop(ctx.task_id or "", None)

    def _heartbeat(self) -> None:
        interval = self._settings.task_lease_seconds / 3
        while not self._stopping.wait(interval):
            with self._lock:
                running = dict(self._running)
            if not running:
                continue
            try:
                held = task_leases.renew(
                    self._db, running, owner=self.owner, lease_seconds=self._settings.task_lease_seconds
                )
            except Exception:
                log.exception("renewing task leases failed")
                continue
            for task_id, ctx in running.items():
                if task_id not in held:
                    ctx.mark_lost()

    def _sweep_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                self.sweep()
            except Exception:
                log.exception("the task sweeper failed; it tries again")
            self._wake.wait(self._settings.task_poll_seconds)
            self._wake.clear()

    def sweep(self) -> None:
        """One round of the sweeper (see the module's docstring)."""
        settings = self._settings
        for record in task_leases.fail_exhausted(self._db, max_attempts=settings.task_max_attempts):
            log.error("task %s failed: %s", record.task_id, record.message)
            if self._after_task is not None:
                self._after_task()
        names = job_names(task=True)
        for task_id, job_name in task_leases.claimable(
            self._db, job_names=names, max_attempts=settings.task_max_attempts
        ):
            self.submit(job_name, {"task_id": task_id})
        if self._last_purge is None or time.monotonic() - self._last_purge >= PURGE_EVERY_SECONDS:
            self._last_purge = time.monotonic()
            purged = purge_finished_tasks(self._db, retention_days=settings.task_retention_days)
            if purged:
                log.info("purged %d task(s) older than %s days", purged, settings.task_retention_days)
