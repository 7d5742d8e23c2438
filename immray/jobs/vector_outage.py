"""Waiting out a Milvus that cannot be reached, for the task jobs that need it.

A clustering or merging run commits nothing before its last transaction, so a run that met an unreachable
Milvus can simply run again from the start. The task stays Running (its lease renewed by the heartbeat)
and runs again with a growing pause until Milvus answers, for at most ``vector_store_wait_seconds``; then
it fails with IMM's ``ServiceUnavailable``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from immray.jobs.context import JobContext
from immray.vectors.resilient import VectorStoreUnavailable

log = logging.getLogger("immray.jobs")

T = TypeVar("T")
FIRST_PAUSE = 1.0
LONGEST_PAUSE = 15.0


def waiting_for_milvus(ctx: JobContext, run: Callable[[], T]) -> T:
    """``run()``, run again while it fails on an unreachable Milvus (see the module's docstring)."""
    deadline = time.monotonic() + ctx.settings.vector_store_wait_seconds
    pause = FIRST_PAUSE
    while True:
        try:
            return run()
        except VectorStoreUnavailable:
            left = deadline - time.monotonic()
            if left <= 0:
                raise
            log.warning("task %s waits for Milvus (%.0f s more at most)", ctx.task_id, left)
            ctx.pause(min(pause, left))
            pause = min(pause * 2, LONGEST_PAUSE)
