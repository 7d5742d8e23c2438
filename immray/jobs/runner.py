"""Running one submitted job, the same way whatever backend delivered it.

For a task job: claim the task's lease (or do nothing: it ended, a live worker holds it, or it waits
behind an older task of its serial key), run the job, end the task Succeeded with the job's result or
Failed with its error, then hand the next task of the same serial key to the workers. A job that stops
because its worker shuts down gives its lease back, so the task runs again at the next start; one that
lost its lease leaves the task to its new holder.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from immray.jobs.context import JobContext, JobInterrupted
from immray.jobs.face_analysis import FaceAnalysis
from immray.jobs.registry import get_job
from immray.observability import logs, metrics
from immray.protocol.errors import ImmError
from immray.services import task_leases
from immray.services.database import Database
from immray.services.tasks import LeaseLost, finish_task
from immray.settings import Settings
from immray.store import TaskStatus

log = logging.getLogger("immray.jobs")


@dataclass
class JobRunner:
    """One worker's way to run jobs. ``owner`` names it in task leases (unique per process)."""

    db: Database
    settings: Settings
    owner: str
    submit: Callable[[str, dict[str, Any]], None]
    stopping: threading.Event = field(default_factory=threading.Event)
    on_start: Callable[[JobContext], None] = lambda ctx: None
    on_end: Callable[[JobContext], None] = lambda ctx: None
    faces: FaceAnalysis | None = None  # where indexing jobs analyse photos; None: in this process
    state_cache: Any = None  # kept between the clustering tasks this runner runs (the dataset actor's)

    def run(self, job_name: str, payload: dict[str, Any]) -> str:
        """Run one submission; returns its outcome (succeeded, failed, interrupted, or skipped: a task
        this worker did not get), which is also counted in the metrics and logged with the job's name.
        Every line logged meanwhile in this thread carries the job, and its task_id, file_id, dataset_id."""
        began = time.monotonic()
        outcome = "failed"
        known = {key: payload.get(key) for key in ("task_id", "file_id", "dataset_id")}
        with logs.bound(job=job_name, **known):
            try:
                outcome = self._run(job_name, payload)
            finally:
                seconds = time.monotonic() - began
                metrics.job_ended(job_name, outcome, seconds)
                log.info(
                    "job %s %s",
                    job_name,
                    outcome,
                    extra={"outcome": outcome, "seconds": round(seconds, 3), "worker": self.owner},
                )
        return outcome

    def _run(self, job_name: str, payload: dict[str, Any]) -> str:
        spec = get_job(job_name)
        if spec is None:
            log.error("job %s is not registered in this process; submission dropped", job_name)
            return "skipped"
        if not spec.task:
            ctx = self._context(job_name, payload)
            try:
                spec.func(ctx, payload)
            except JobInterrupted:
                log.info("job %s stopped: the worker is shutting down", job_name)
                return "interrupted"
            except Exception:
                log.exception("job %s failed", job_name)
                return "failed"
            return "succeeded"
        return self._run_task(job_name, str(payload.get("task_id", "")))

    def _run_task(self, job_name: str, task_id: str) -> str:
        settings = self.settings
        claim = task_leases.claim(
            self.db,
            task_id,
            owner=self.owner,
            lease_seconds=settings.task_lease_seconds,
            max_attempts=settings.task_max_attempts,
        )
        if claim is None:
            return "skipped"
        logs.bind(dataset_id=claim.payload.get("dataset_id"))  # from the task's own payload
        if claim.job_name != job_name:
            log.warning("task %s is run by job %s, not %s", task_id, claim.job_name, job_name)
        spec = get_job(claim.job_name)
        ctx = self._context(
            claim.job_name, claim.payload, task_id=task_id, owner=self.owner, attempt=claim.attempt
        )
        self.on_start(ctx)
        outcome = "failed"
        try:
            if spec is None:
                raise RuntimeError(f"job {claim.job_name} is not registered in this worker")
            result = spec.func(ctx, claim.payload)
            if not ctx.finished:
                with self.db.write() as session:
                    ctx.finish(session, result)
            log.info("task %s succeeded", task_id)
            outcome = "succeeded"
        except JobInterrupted as exc:
            outcome = "interrupted"
            if not ctx.lost and task_leases.release(self.db, task_id, owner=self.owner):
                log.info("task %s handed back (%s); it runs again at the next start", task_id, exc)
            else:
                log.warning("task %s: %s", task_id, exc)
        except ImmError as exc:
            self._fail(task_id, exc.code, exc.message)
        except Exception as exc:
            log.exception("task %s (job %s) failed", task_id, claim.job_name)
            self._fail(
                task_id,
                "InternalError",
                f"The task failed on an internal error ({type(exc).__name__}); the server log has details.",
            )
        finally:
            self.on_end(ctx)
        if claim.serial_key is not None:
            following = task_leases.next_in_line(
                self.db, claim.serial_key, max_attempts=settings.task_max_attempts
            )
            if following is not None:
                self.submit(following[1], {"task_id": following[0]})
        return outcome

    def _context(self, job_name: str, payload: dict[str, Any], **task: Any) -> JobContext:
        """What a job sees, from this runner's database, settings, stop flag and face analysis."""
        return JobContext(
            job_name=job_name,
            payload=payload,
            db=self.db,
            settings=self.settings,
            stopping=self.stopping,
            faces=self.faces,
            state_cache=self.state_cache,
            **task,
        )

    def _fail(self, task_id: str, code: str, message: str) -> None:
        try:
            with self.db.write() as session:
                finish_task(
                    session, task_id, owner=self.owner, status=TaskStatus.FAILED, code=code, message=message
                )
            log.info("task %s failed: %s: %s", task_id, code, message)
        except LeaseLost:
            log.warning("task %s failed here, but another worker holds it now", task_id)
