"""One thread that runs a dataset's tasks one after the other, and one that keeps their leases alive.

A dataset actor (``immray.actors.dataset``) owns one: tasks submitted to it queue here in order, each is
claimed in the task table (its lease), run by the :class:`JobRunner`, and ended Succeeded or Failed. The
heartbeat renews the lease of the running task every third of ``task_lease_seconds`` and flags a task
whose lease was lost (another runner took it after this one stalled), so its late end changes nothing.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from immray.jobs.catalog import load_jobs
from immray.jobs.context import JobContext
from immray.jobs.registry import get_job
from immray.jobs.runner import JobRunner
from immray.services import task_leases
from immray.services.database import Database
from immray.settings import Settings

log = logging.getLogger("immray.jobs")

_STOP = object()


class TaskWorker:
    """``start()`` starts the threads; ``submit`` queues a task once; ``stop()`` hands back what runs."""

    def __init__(
        self,
        db: Database,
        settings: Settings,
        *,
        owner: str,
        submit: Callable[[str, dict[str, Any]], None] | None = None,
        after_task: Callable[[], None] | None = None,
        state_cache: Any = None,
    ) -> None:
        self._db = db
        self._settings = settings
        self.owner = owner
        self._after_task = after_task
        self._queue: queue.Queue[Any] = queue.Queue()
        self._queued: list[str] = []  # task ids queued or running here, in order, so none is queued twice
        self._running: dict[str, JobContext] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._runner = JobRunner(
            db=db,
            settings=settings,
            owner=owner,
            submit=submit or self.submit,
            stopping=self._stopping,
            on_start=self._started,
            on_end=self._ended,
            state_cache=state_cache,
        )

    def submit(self, job_name: str, payload: dict[str, Any]) -> bool:
        """Queue a task job; False when that task is queued or running here already."""
        spec = get_job(job_name)
        task_id = str(payload.get("task_id", "")) if spec is not None and spec.task else ""
        with self._lock:
            if task_id and task_id in self._queued:
                return False
            if task_id:
                self._queued.append(task_id)
        self._queue.put((job_name, payload))
        return True

    def start(self) -> None:
        if self._threads:
            return
        load_jobs()
        self._stopping.clear()
        for target, name in ((self._work, "tasks"), (self._heartbeat, "heartbeat")):
            thread = threading.Thread(target=target, name=f"immray-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop taking work; the running task is asked to stop (``ctx.check``) and waited for up to
        ``timeout`` seconds, then handed back so it runs again at once elsewhere or at the next start."""
        self._stopping.set()
        self._queue.put(_STOP)
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            left = list(self._running.values())
        for ctx in left:
            if ctx.task_id is not None and task_leases.release(self._db, ctx.task_id, owner=self.owner):
                log.warning("task %s still running at shutdown; handed back", ctx.task_id)
        self._threads = []

    def status(self) -> dict[str, list[str]]:
        """The task running now and the ones waiting behind it, by id."""
        with self._lock:
            running = sorted(self._running)
            return {"running": running, "queued": [t for t in self._queued if t not in running]}

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP or self._stopping.is_set():
                return
            job_name, payload = item
            try:
                self._runner.run(job_name, payload)
            except Exception:  # the database was away; the sweeper sends the task again
                log.exception("running job %s failed", job_name)
            finally:
                task_id = str(payload.get("task_id", ""))
                with self._lock:
                    if task_id in self._queued:
                        self._queued.remove(task_id)
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
