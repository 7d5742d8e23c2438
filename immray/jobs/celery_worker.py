"""``immray worker``: a Celery worker (prefork) that runs immray's jobs in the scale-out mode.

Each worker process, right after it is forked (``worker_process_init``), opens its own database engine,
loads the face models once (they serve every photo that process analyses), installs a Celery backend so
the jobs it runs can submit jobs (the next clustering task of a dataset, ...), and starts a lease keeper
that renews the lease of the task it is running, as the embedded pool's heartbeat does. The main process
only receives messages and hands them to its processes; it opens no database connection, so nothing
is shared across ``fork``. Like the server, it migrates the database on start.

One job per process at a time; concurrency defaults to one process per CPU. A warm shutdown (SIGTERM,
Ctrl-C) lets the running jobs end; a worker that dies leaves its message unacknowledged, and the broker
delivers it again (see :mod:`immray.jobs.celery_app`).
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from immray.settings import Settings

log = logging.getLogger("immray.worker")


class WorkerError(RuntimeError):
    """The worker cannot start; the message says why."""


@dataclass(frozen=True)
class WorkerOptions:
    concurrency: int  # 0: one process per CPU
    name: str | None = None  # Celery node name; default immray-<pid>@<host>
    log_level: str = "info"
    metrics_port: int = 0  # 0: no /metrics


def default_node_name() -> str:
    return f"immray-{os.getpid()}@{socket.gethostname()}"


def run_worker(settings: Settings, options: WorkerOptions) -> int:
    """Run a worker until it is stopped; returns its exit code. WorkerError when it cannot start."""
    metrics_dir: Path | None = None
    if options.metrics_port:
        from immray.observability import metrics

        metrics_dir = Path(tempfile.mkdtemp(prefix="immray-metrics-"))
        metrics.use_multiprocess_dir(metrics_dir)  # before any job records a metric
    try:
        return _run(settings, options)
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)


def _run(settings: Settings, options: WorkerOptions) -> int:
    from celery import signals

    from immray.jobs.catalog import load_jobs
    from immray.jobs.celery_app import TASK_NAME, Queues, display_url, make_celery
    from immray.observability.logs import configure_logging

    check_database(settings)
    load_jobs()
    app = make_celery(settings)
    app.task(name=TASK_NAME, bind=True)(_run_job)
    signals.setup_logging.connect(
        lambda **_: configure_logging(settings.log_format, options.log_level), weak=False
    )
    concurrency = options.concurrency or os.cpu_count() or 1
    signals.worker_process_init.connect(lambda **_: _start_process(settings, app, concurrency), weak=False)
    signals.worker_process_shutdown.connect(lambda **_: _stop_process(), weak=False)
    if options.metrics_port:
        from immray.observability.metrics import serve_worker_metrics

        try:
            serve_worker_metrics(options.metrics_port)
        except OSError as exc:
            raise WorkerError(f"cannot serve metrics on port {options.metrics_port}: {exc}") from None
    worker = app.Worker(
        hostname=options.name or default_node_name(),
        concurrency=concurrency,
        pool="prefork",
        queues=list(Queues.of(settings).names),
        loglevel=options.log_level.upper(),
        quiet=True,
        without_mingle=True,  # nothing to sync: the task table is the state
        without_gossip=True,
    )
    log.info(
        "worker %s: %d process(es), broker %s",
        worker.hostname,
        worker.concurrency,
        display_url(settings.broker_url or ""),
    )
    worker.start()
    return int(worker.exitcode or 0)


def check_database(settings: Settings) -> None:
    """The broker must be reachable and the shared PostgreSQL database at the newest revision: the worker
    migrates it as the server does (upgraders take turns on a lock, so starting both at once is fine)."""
    from alembic.util import CommandError
    from sqlalchemy.exc import SQLAlchemyError

    from immray.jobs.celery_backend import ScaleOutError, check_broker, check_scale_out
    from immray.store import normalize_url, upgrade

    try:
        check_scale_out(settings)
        check_broker(settings)
    except ScaleOutError as exc:
        raise WorkerError(str(exc)) from None
    url = normalize_url(settings.resolved_database_url)
    shown = url.render_as_string(hide_password=True)
    try:
        upgrade(url)
    except SQLAlchemyError as exc:
        raise WorkerError(f"cannot open the database {shown}: {getattr(exc, 'orig', None) or exc}") from None
    except CommandError as exc:  # e.g. at a revision this (older) version does not know
        raise WorkerError(f"cannot upgrade the database {shown}: {exc}") from None


# --- inside each worker process -------------------------------------------------------------------


class _Process:
    """What one worker process keeps between jobs."""

    def __init__(self, settings: Settings, app: Any) -> None:
        from immray.jobs.celery_app import Queues, send
        from immray.jobs.local import worker_name
        from immray.jobs.runner import JobRunner
        from immray.jobs.submission import install_backend, submit
        from immray.services.analysis import analyzer_for
        from immray.services.database import Database

        self.settings = settings
        self.db = Database.connect(settings.resolved_database_url)
        self.owner = worker_name()
        self.keeper = LeaseKeeper(self.db, settings, self.owner)
        self.backend = _Sender(app, Queues.of(settings), send)
        install_backend(self.backend)
        self.runner = JobRunner(
            db=self.db,
            settings=settings,
            owner=self.owner,
            submit=submit,
            on_start=self.keeper.add,
            on_end=self.keeper.remove,
        )
        analyzer_for(settings)  # the face models, loaded once for every photo this process analyses
        self.keeper.start()

    def close(self) -> None:
        self.keeper.stop()
        self.db.close()


class _Sender:
    """The job backend inside a worker process: jobs submitted by jobs go to the broker too."""

    def __init__(self, app: Any, queues: Any, send: Any) -> None:
        self._app = app
        self._queues = queues
        self._send = send

    def submit(self, job_name: str, payload: dict[str, Any]) -> None:
        self._send(self._app, self._queues, job_name, payload)


_process: _Process | None = None


def _start_process(settings: Settings, app: Any, concurrency: int) -> None:
    global _process
    from immray.jobs.face_analysis import share_cores

    share_cores(concurrency)
    _process = _Process(settings, app)
    log.info("worker process %s ready", _process.owner)


def _stop_process() -> None:
    global _process
    if _process is not None:
        _process.close()
        _process = None


def _run_job(task: Any, job_name: str, payload: dict[str, Any]) -> str:
    """The one Celery task: run the job through the runner, as the embedded pool does."""
    if _process is None:  # not a prefork child (e.g. a test calling the task directly)
        raise RuntimeError("immray jobs run in `immray worker` processes")
    return _process.runner.run(job_name, dict(payload))


class LeaseKeeper:
    """Renews the leases of the tasks this process runs, every third of a lease; a task whose lease was
    lost (this process stalled past it, and another worker took the task over) is told to stop."""

    def __init__(self, db: Any, settings: Settings, owner: str) -> None:
        self._db = db
        self._settings = settings
        self._owner = owner
        self._running: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, ctx: Any) -> None:
        with self._lock:
            self._running[ctx.task_id or ""] = ctx

    def remove(self, ctx: Any) -> None:
        with self._lock:
            self._running.pop(ctx.task_id or "", None)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="immray-lease-keeper", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(5)

    def _loop(self) -> None:
        from immray.services import task_leases

        interval = self._settings.task_lease_seconds / 3
        while not self._stopping.wait(interval):
            with self._lock:
                running = dict(self._running)
            if not running:
                continue
            try:
                held = task_leases.renew(
                    self._db, running, owner=self._owner, lease_seconds=self._settings.task_lease_seconds
                )
            except Exception:
                log.exception("renewing task leases failed")
                continue
            for task_id, ctx in running.items():
                if task_id not in held:
                    ctx.mark_lost()
