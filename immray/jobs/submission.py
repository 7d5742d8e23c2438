"""``submit(job_name, payload)``: the one way anything in immray asks for a job to run.

The backend (the Ray job backend of the ingress replica) installs itself at start-up. A task job
submitted while no backend runs is not lost: the task table keeps it and the next pool to start runs it.
A plain job has nowhere to wait, so submitting one without a backend is an error.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Mapping
from typing import Any, Protocol

from immray.jobs.registry import get_job

log = logging.getLogger("immray.jobs")


class JobBackend(Protocol):
    def submit(self, job_name: str, payload: dict[str, Any]) -> None: ...


_lock = threading.Lock()
_backend: JobBackend | None = None


def install_backend(backend: JobBackend) -> None:
    global _backend
    with _lock:
        _backend = backend


def uninstall_backend(backend: JobBackend) -> None:
    global _backend
    with _lock:
        if _backend is backend:
            _backend = None


def submit(job_name: str, payload: Mapping[str, Any]) -> None:
    """Run ``job_name`` with ``payload`` (JSON-serialisable: it may cross a process boundary)."""
    spec = get_job(job_name)
    if spec is None:  # the product's jobs register on import: a process that submitted none yet loads them
        from immray.jobs.catalog import load_jobs

        load_jobs()
        spec = get_job(job_name)
    if spec is None:
        raise ValueError(f"no job is registered as {job_name!r}")
    payload = dict(payload)
    try:
        json.dumps(payload)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"the payload of job {job_name} is not JSON: {exc}") from None
    backend = _backend
    if backend is None:
        if spec.task:
            log.debug("no job backend runs; task %s waits in the task table", payload.get("task_id"))
            return
        raise RuntimeError(f"no job backend is running to run {job_name}")
    backend.submit(job_name, payload)
