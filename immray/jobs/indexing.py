"""The analysis of one indexed file as a job (``index-file``): a thin shell over ``services.indexing``.

Plain jobs (no task record): IMM's IndexFileMeta answers with an EventId, not a TaskId. The files table
is their durable queue; :class:`PendingFilesRecovery` submits again, when the server starts, the files
whose jobs died with an earlier process.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Mapping
from typing import Any

from immray.jobs.context import JobContext
from immray.jobs.registry import job
from immray.observability import metrics
from immray.services import indexing
from immray.services.database import Database
from immray.settings import Settings
from immray.sources import sources_for

log = logging.getLogger("immray.indexing")


@job(indexing.INDEX_JOB)
def index_file(ctx: JobContext, payload: Mapping[str, Any]) -> None:
    file_id = int(payload["file_id"])
    # The dataset's FaceDetectionMode, read when its photo is analysed: a change applies to the next photos.
    mode = indexing.detection_mode(ctx.db, file_id)
    indexing.analyze_file(
        ctx.db,
        sources_for(ctx.settings),
        # photos/s and faces/s of this worker; ctx.faces says in which process the analysis runs
        metrics.counting_photos(functools.partial(ctx.faces.analyze, mode)),
        ctx.faces.embedder_name(mode),
        file_id,
        str(payload.get("event_id") or ""),
        max_attempts=ctx.settings.task_max_attempts,
        lease_seconds=ctx.settings.analysis_lease_seconds,
    )


class PendingFilesRecovery:
    """A background service, started after the job backend: re-submits the Pending files' analysis at
    start, then, every quarter of the analysis lease, the files whose analysis lease expired (the replica
    analysing them was lost). Several replicas may do both: a file's lease lets one analysis at a time in."""

    name = "pending files recovery"

    def __init__(self, db: Database, settings: Settings | None = None) -> None:
        self._db = db
        self._interval = (settings or Settings()).analysis_lease_seconds / 4
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        count = indexing.requeue_pending(self._db)
        if count:
            log.info("re-submitted the analysis of %d pending file(s)", count)
        self._stopping.clear()
        self._thread = threading.Thread(target=self._loop, name="immray-pending-files", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _loop(self) -> None:
        while not self._stopping.wait(self._interval):
            try:
                count = indexing.requeue_expired(self._db)
            except Exception:
                log.exception("looking for lost analyses failed; it looks again")
                continue
            if count:
                log.warning("re-submitted the analysis of %d file(s) whose analysis was lost", count)
