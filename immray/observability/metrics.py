"""Prometheus metrics of the server and the workers (prometheus-client).

What is counted, wherever the work runs (the server's in-process pool or a Celery worker):

- ``immray_jobs_total{job, outcome}``: jobs run, ``outcome`` succeeded | failed | interrupted | skipped
  (a task job that found its task ended, held by another worker, or waiting behind its dataset's task);
- ``immray_job_duration_seconds{job}``: how long the jobs that ran took (skipped ones excluded);
- ``immray_photos_analyzed_total{result}``: photos analysed, ``result`` analysed | error;
  ``rate()`` of it is the photos/s of the whole deployment when summed over the workers;
- ``immray_faces_found_total``: faces found in them (faces/s likewise);
- ``immray_api_requests_total{action, status}`` and ``immray_api_request_duration_seconds{action}``
  on the server.

The server answers ``GET /metrics`` on its API port (:func:`instrument`). A Celery worker is several
processes (prefork), so it uses prometheus-client's multiprocess mode: each process writes its values to
files in one directory and the worker's main process serves their sum (:func:`serve_worker_metrics`).
That mode is chosen when a metric is created, so the metrics here are made on first use, after
``immray worker`` has picked the directory (:func:`use_multiprocess_dir`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
    start_http_server,
    values,
)

JOB_OUTCOMES = ("succeeded", "failed", "interrupted", "skipped")
JOB_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
API_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
OTHER_ACTION = "other"  # requests naming no known action: a label per unknown name would be unbounded
T = TypeVar("T")


@dataclass(frozen=True)
class _Metrics:
    jobs: Counter
    job_seconds: Histogram
    photos: Counter
    faces: Counter
    api_requests: Counter
    api_seconds: Histogram


@cache
def _metrics() -> _Metrics:
    return _Metrics(
        jobs=Counter("immray_jobs", "Jobs run, by job name and outcome.", ["job", "outcome"]),
        job_seconds=Histogram(
            "immray_job_duration_seconds", "How long jobs ran, by job name.", ["job"], buckets=JOB_BUCKETS
        ),
        photos=Counter(
            "immray_photos_analyzed", "Photos analysed, by result (analysed, error).", ["result"]
        ),
        faces=Counter("immray_faces_found", "Faces found in the photos analysed."),
        api_requests=Counter(
            "immray_api_requests", "IMM API requests, by action and HTTP status.", ["action", "status"]
        ),
        api_seconds=Histogram(
            "immray_api_request_duration_seconds",
            "IMM API request latency, by action.",
            ["action"],
            buckets=API_BUCKETS,
        ),
    )


# --- recording --------------------------------------------------------------------------------------


def job_ended(job: str, outcome: str, seconds: float) -> None:
    metrics = _metrics()
    metrics.jobs.labels(job, outcome).inc()
    if outcome != "skipped":
        metrics.job_seconds.labels(job).observe(seconds)


def counting_photos(analyze: Callable[[bytes], T]) -> Callable[[bytes], T]:
    """``analyze`` (bytes -> an image with ``.faces``), counting each photo and the faces found in it."""

    def counted(data: bytes) -> T:
        metrics = _metrics()
        try:
            image = analyze(data)
        except Exception:
            metrics.photos.labels("error").inc()
            raise
        metrics.photos.labels("analysed").inc()
        metrics.faces.inc(len(image.faces))  # type: ignore[attr-defined]
        return image

    return counted


# --- the server ---------------------------------------------------------------------------------------


def instrument(app: Any, actions: Collection[str]) -> None:
    """Count ``app``'s IMM requests by action (one of ``actions``, else "other") and status, and answer
    ``GET /metrics`` with the process's metrics."""
    from starlette.responses import Response

    _metrics()  # create them now, so /metrics lists every series from the start

    async def metrics_endpoint(request: Any) -> Response:
        return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)

    app.add_route("/metrics", metrics_endpoint, methods=["GET"], include_in_schema=False)
    app.add_middleware(_ApiRequestMetrics, actions=frozenset(actions))


class _ApiRequestMetrics:
    """ASGI middleware timing each ``POST /`` (IMM's RPC endpoint) by its ``x-acs-action`` header."""

    def __init__(self, app: Any, actions: frozenset[str]) -> None:
        self.app = app
        self.actions = actions

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope.get("path") != "/" or scope.get("method") != "POST":
            await self.app(scope, receive, send)
            return
        action = OTHER_ACTION
        for name, value in scope.get("headers") or ():
            if name == b"x-acs-action":
                given = value.decode("latin-1")
                action = given if given in self.actions else OTHER_ACTION
                break
        status = 500
        began = time.perf_counter()

        async def sending(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            metrics = _metrics()
            metrics.api_requests.labels(action, str(status)).inc()
            metrics.api_seconds.labels(action).observe(time.perf_counter() - began)


# --- the workers --------------------------------------------------------------------------------------


def use_multiprocess_dir(directory: Path) -> None:
    """Make this process and the processes it forks write their metrics to files in ``directory`` (an
    empty directory of this worker's own). Call it before any metric is recorded."""
    directory.mkdir(parents=True, exist_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory)  # prometheus-client's own switch
    values.ValueClass = values.get_value_class()  # in case prometheus-client was imported already
    if _metrics.cache_info().currsize:
        raise RuntimeError("metrics were recorded before the multiprocess directory was chosen")


def serve_worker_metrics(port: int, host: str = "0.0.0.0") -> None:
    """Serve the sum of every process's metrics (this worker's multiprocess directory) on ``port``."""
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    start_http_server(port, addr=host, registry=registry)
