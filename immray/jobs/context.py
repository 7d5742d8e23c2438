"""What a running job sees: its payload, the database, progress reporting, and when to stop.

Long jobs call ``ctx.progress(percent)`` (or ``ctx.check()``) between steps: both raise
:class:`JobInterrupted` once the job should stop (its worker is shutting down, or its task's lease went to
another worker), so a job never ends a task it no longer holds. A task job that writes its result in its
own transaction ends the task in that same transaction with ``ctx.finish(session, result)``; otherwise the
runner ends it with what the job returns.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from sqlalchemy.orm import Session

from immray import vectors
from immray.jobs.face_analysis import FaceAnalysis, InProcessAnalysis
from immray.services.database import Database
from immray.services.tasks import LeaseLost, finish_task, report_progress
from immray.settings import Settings
from immray.store import TaskStatus


class JobInterrupted(Exception):
    """The job must stop now; its task (if any) will run again, here or elsewhere."""


class JobContext:
    def __init__(
        self,
        *,
        job_name: str,
        payload: Mapping[str, Any],
        db: Database,
        settings: Settings,
        stopping: threading.Event,
        task_id: str | None = None,
        owner: str | None = None,
        attempt: int = 1,
        faces: FaceAnalysis | None = None,
        state_cache: Any = None,
    ) -> None:
        self.job_name = job_name
        self.payload = payload
        self.db = db
        self.settings = settings
        vectors.attach(db, settings)  # where the services it runs write face vectors (immray.vectors)
        self.task_id = task_id
        self.owner = owner
        self.attempt = attempt  # 2 and more: an earlier run was cut short, so the job must be idempotent
        self.faces = faces or InProcessAnalysis(settings)  # where face analysis runs (jobs.face_analysis)
        self.state_cache = state_cache  # the dataset actor's clustering states between tasks, if any
        self.finished = False
        self._stopping = stopping
        self._lost = threading.Event()
        self._progress = -1

    @property
    def lost(self) -> bool:
        return self._lost.is_set()

    def mark_lost(self) -> None:
        """Called by the heartbeat when this task's lease is gone."""
        self._lost.set()

    def check(self) -> None:
        if self._lost.is_set():
            raise JobInterrupted(f"task {self.task_id} is no longer held by this worker")
        if self._stopping.is_set():
            raise JobInterrupted("the worker is shutting down")

    def pause(self, seconds: float) -> None:
        """Wait ``seconds``, or less when the job must stop (then :class:`JobInterrupted`)."""
        self._stopping.wait(seconds)
        self.check()

    def progress(self, percent: float) -> None:
        """Report how far the job is (0-100); written only when the whole percent changes."""
        self.check()
        value = max(0, min(100, int(percent)))
        if self.task_id is None or self.owner is None or value == self._progress:
            return
        try:
            report_progress(self.db, self.task_id, self.owner, value)
        except LeaseLost:
            self.mark_lost()
            raise JobInterrupted(f"task {self.task_id} is no longer held by this worker") from None
        self._progress = value

    def finish(self, session: Session, result: Mapping[str, Any] | None = None) -> None:
        """End the task Succeeded inside ``session`` (the job's own transaction, committed by the job), so
        the result, the task's end and its notification are one commit."""
        if self.task_id is None:
            raise RuntimeError(f"job {self.job_name} runs no task")
        try:
            finish_task(session, self.task_id, owner=self.owner, status=TaskStatus.SUCCEEDED, result=result)
        except LeaseLost:
            self.mark_lost()
            raise JobInterrupted(f"task {self.task_id} is no longer held by this worker") from None
        self.finished = True
