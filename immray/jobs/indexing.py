"""The analysis of one indexed file as a job (``index-file``): a thin shell over ``services.indexing``.

Plain jobs (no task record): IMM's IndexFileMeta answers with an EventId, not a TaskId. The files table
is their durable queue; :class:`PendingFilesRecovery` submits again, when the server starts, the files
whose jobs died with an earlier process.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping
from typing import Any

from immray.jobs.context import JobContext
from immray.jobs.registry import job
from immray.observability import metrics
from immray.services import indexing
from immray.services.database import Database
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
    )


class PendingFilesRecovery:
    """A background service, started after the job backend: re-submits the Pending files' analysis."""

    name = "pending files recovery"

    def __init__(self, db: Database) -> None:
        self._db = db

    def start(self) -> None:
        count = indexing.requeue_pending(self._db)
        if count:
            log.info("re-submitted the analysis of %d pending file(s)", count)

    def stop(self) -> None:
        pass
