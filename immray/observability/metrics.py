"""immray's metrics, on Ray's metrics (``ray.util.metrics``): Ray exports them, with its own, from every node.

Each Ray node serves the metrics of its processes (the Serve replicas, the dataset actors, the driver) in
Prometheus' text format on its metrics export port (``ray start --metrics-export-port``, or
``ray.init(_metrics_export_port=...)``; the Ray dashboard's Metrics view and its Prometheus service discovery
file point Prometheus there). Ray puts ``ray_`` before each name and adds the labels of the process
(``SessionName``, ``NodeAddress``, ``WorkerId``, ...); sum over them for the whole deployment. The series:

- ``ray_immray_jobs_total{job, outcome}``: jobs run, ``outcome`` succeeded | failed | interrupted | skipped
  (a task job that found its task ended, held by another worker, or waiting behind its dataset's task);
- ``ray_immray_job_duration_seconds{job}`` (histogram): how long the jobs that ran took, skipped ones
  excluded; the clustering tasks are ``job="face-clustering"`` and ``job="figure-clusters-merging"``, the
  analysis of one indexed file ``job="index-file"``;
- ``ray_immray_photos_analyzed_total{result}``: photos analysed, ``result`` analysed | error; ``rate()`` of
  it is the photos/s (summed over the processes, of the deployment);
- ``ray_immray_faces_found_total``: faces found in them (faces/s likewise);
- ``ray_immray_photo_analysis_seconds{result}`` (histogram): how long the analysis of one photo took, as
  the job waited for it (the face models may run in another replica);
- ``ray_immray_api_requests_total{action, status}``: IMM requests (``POST /``) by action (one of the
  server's, else "other": unknown names are no label) and HTTP status;
- ``ray_immray_api_request_duration_seconds{action}`` (histogram): their latency.

Ray's histograms count observations in the right buckets, but their ``_sum`` adds each bucket's middle, not
the value observed: use the buckets (``histogram_quantile``), not ``_sum / _count``.

The API port no longer serves ``GET /metrics``: it answers 410 Gone with a line that says where the
metrics went (:func:`instrument`).

A ``ray.util.metrics`` object belongs to a Ray worker or driver, so the metrics are made on first use in
each process once Ray is initialised there. Where it is not (a unit test, a command of the CLI), recording
does nothing: nothing here ever fails because Ray is absent.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

JOB_OUTCOMES = ("succeeded", "failed", "interrupted", "skipped")
JOB_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
PHOTO_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
API_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
OTHER_ACTION = "other"  # requests naming no known action: a label per unknown name would be unbounded
MOVED = (
    "immray's metrics moved to Ray's metrics export: each Ray node serves them (ray_immray_* series) on "
    "its metrics export port, which the Ray dashboard's Metrics view reads.\n"
)
T = TypeVar("T")
log = logging.getLogger("immray.metrics")


@dataclass(frozen=True)
class _Metrics:
    jobs: Any
    job_seconds: Any
    photos: Any
    faces: Any
    photo_seconds: Any
    api_requests: Any
    api_seconds: Any


_made: _Metrics | None = None
_lock = threading.Lock()
_failures = 0


def _metrics() -> _Metrics | None:
    """This process's metrics, made on first use once Ray is initialised; None while it is not."""
    global _made
    ray = sys.modules.get("ray")  # not imported: then Ray is not initialised here either
    if ray is None or not ray.is_initialized():
        _made = None  # made again for the next Ray this process joins
        return None
    if _made is not None:
        return _made
    with _lock:
        if _made is None:
            _made = _create()
    return _made


def _create() -> _Metrics:
    from ray.util.metrics import Counter, Histogram

    return _Metrics(
        jobs=Counter("immray_jobs_total", "Jobs run, by job name and outcome.", ("job", "outcome")),
        job_seconds=Histogram(
            "immray_job_duration_seconds", "How long jobs ran, by job name.", list(JOB_BUCKETS), ("job",)
        ),
        photos=Counter(
            "immray_photos_analyzed_total", "Photos analysed, by result (analysed, error).", ("result",)
        ),
        faces=Counter("immray_faces_found_total", "Faces found in the photos analysed."),
        photo_seconds=Histogram(
            "immray_photo_analysis_seconds",
            "How long the analysis of one photo took, by result (analysed, error).",
            list(PHOTO_BUCKETS),
            ("result",),
        ),
        api_requests=Counter(
            "immray_api_requests_total", "IMM API requests, by action and HTTP status.", ("action", "status")
        ),
        api_seconds=Histogram(
            "immray_api_request_duration_seconds",
            "IMM API request latency, by action.",
            list(API_BUCKETS),
            ("action",),
        ),
    )


# --- recording --------------------------------------------------------------------------------------


@contextmanager
def _recording() -> Iterator[_Metrics | None]:
    """The metrics to record in (None without Ray); a failure to record is logged, never raised: the
    work being counted matters more than its count."""
    try:
        metrics = _metrics()
    except Exception:
        _failed()
        metrics = None
    try:
        yield metrics
    except Exception:
        _failed()


def _failed() -> None:
    global _failures
    _failures += 1
    if _failures == 1:  # once per process: a broken metric would fill the log
        log.warning("recording a metric failed; this process's metrics may be incomplete", exc_info=True)


def job_ended(job: str, outcome: str, seconds: float) -> None:
    with _recording() as metrics:
        if metrics is not None:
            metrics.jobs.inc(1, tags={"job": job, "outcome": outcome})
            if outcome != "skipped":
                metrics.job_seconds.observe(seconds, tags={"job": job})


def counting_photos(analyze: Callable[[bytes], T]) -> Callable[[bytes], T]:
    """``analyze`` (bytes -> an image with ``.faces``), counting and timing each photo and counting the
    faces found in it."""

    def counted(data: bytes) -> T:
        began = time.perf_counter()
        try:
            image = analyze(data)
        except Exception:
            _photo_analysed("error", time.perf_counter() - began, 0)
            raise
        _photo_analysed("analysed", time.perf_counter() - began, len(image.faces))  # type: ignore[attr-defined]
        return image

    return counted


def photos_analysed(results: Collection[Any], seconds: float) -> None:
    """Count photos analysed as one batch (a backfill's actor), each with its share of ``seconds``: a
    result with ``.faces`` is analysed, anything else (an exception) an error."""
    share = seconds / len(results) if results else 0.0
    for result in results:
        faces = getattr(result, "faces", None)
        _photo_analysed("error" if faces is None else "analysed", share, len(faces or ()))


def _photo_analysed(result: str, seconds: float, faces: int) -> None:
    with _recording() as metrics:
        if metrics is not None:
            metrics.photos.inc(1, tags={"result": result})
            metrics.photo_seconds.observe(seconds, tags={"result": result})
            if faces:  # a Ray counter takes only positive steps
                metrics.faces.inc(faces)


def api_request_ended(action: str, status: int, seconds: float) -> None:
    with _recording() as metrics:
        if metrics is not None:
            metrics.api_requests.inc(1, tags={"action": action, "status": str(status)})
            metrics.api_seconds.observe(seconds, tags={"action": action})


# --- the server ---------------------------------------------------------------------------------------


def instrument(app: Any, actions: Collection[str]) -> None:
    """Count ``app``'s IMM requests by action (one of ``actions``, else "other") and status, and time them.
    ``GET /metrics`` answers 410 Gone with a line saying where the metrics are now (Ray's export)."""
    from starlette.responses import PlainTextResponse

    async def metrics_moved(request: Any) -> PlainTextResponse:
        return PlainTextResponse(MOVED, status_code=410)

    app.add_route("/metrics", metrics_moved, methods=["GET"], include_in_schema=False)
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
            api_request_ended(action, status, time.perf_counter() - began)
