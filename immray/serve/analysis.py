"""The analysis deployment: the card's embedding actors. Each replica loads the face models once and
analyses the photos that indexing jobs send it, batched across requests with ``@serve.batch``.

A replica holds no database and no source reader: bytes in, faces out. The caller (an indexing job in the
ingress replica, ``serve.indexing``) reads the photo and stores what comes back, so a replica that dies
costs only the photos it was analysing, and those are sent again (see ``ServeFaceAnalysis``). A batch runs
through the torch models as tensor batches (``Analyzer.analyze_batch``), on the replica's GPU when the Serve
config gives it one (``num_gpus``), else on as many CPU threads as it has CPUs (``num_cpus``).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from ray import serve

from immray.faces import AnalyzedImage
from immray.jobs.face_analysis import InProcessAnalysis
from immray.observability.logs import configure_logging
from immray.settings import Settings

log = logging.getLogger("immray.analysis")

DEFAULT_BATCH_SIZE = 8
DEFAULT_BATCH_WAIT_SECONDS = 0.01


class FaceAnalysisReplica:
    """One replica of the analysis deployment (``FaceAnalysisDeployment`` below). Its settings are the
    environment's until ``reconfigure`` brings the user_config's."""

    def __init__(self) -> None:
        limit_cpu_threads(assigned_cpus())
        self._use({})

    def _use(self, overrides: dict[str, Any]) -> None:
        self._overrides = overrides
        self._settings = Settings.from_overrides(overrides)
        configure_logging(self._settings.log_format, serve_logs=True)
        self._local = InProcessAnalysis(self._settings)
        self._local.embedder_name(None)  # the server's default mode loads before the first photo

    def reconfigure(self, config: dict[str, Any]) -> None:
        """``user_config`` of the Serve config: ``settings`` (the face pipeline's IMMRAY_* overrides, applied
        in place: the models stay loaded), the batch size and how long a batch waits to fill."""
        overrides = dict(config.get("settings") or {})
        if overrides != self._overrides:
            self._use(overrides)
        self._analyze_batch.set_max_batch_size(int(config.get("max_batch_size", DEFAULT_BATCH_SIZE)))
        self._analyze_batch.set_batch_wait_timeout_s(
            float(config.get("batch_wait_timeout_s", DEFAULT_BATCH_WAIT_SECONDS))
        )

    async def analyze(self, mode: str | None, data: bytes) -> AnalyzedImage:
        """The faces of one photo (ImageError for what is not a usable image), batched with others."""
        outcome = await self._analyze_batch((mode, data))
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def embedder_name(self, mode: str | None) -> str:
        return self._local.embedder_name(mode)

    def same_person_distance(self, mode: str | None) -> float:
        """The embedder's same/different boundary (the image actions' similarity is scaled by it)."""
        from immray.faces.similarity import same_person_distance
        from immray.services.analysis import analyzer_for

        return same_person_distance(analyzer_for(self._settings, mode).embedder)

    @serve.batch(max_batch_size=DEFAULT_BATCH_SIZE, batch_wait_timeout_s=DEFAULT_BATCH_WAIT_SECONDS)
    async def _analyze_batch(self, requests: list[tuple[str | None, bytes]]) -> list[Any]:
        # One photo's bad bytes fail that photo alone: each outcome is its result or its exception.
        return await asyncio.to_thread(self._run_batch, requests)

    def _run_batch(self, requests: list[tuple[str | None, bytes]]) -> list[Any]:
        # The photos of one detection mode run as one batch through the models; one photo's bad bytes fail
        # that photo alone: each outcome is its result or its exception.
        outcomes: list[Any] = [None] * len(requests)
        by_mode: dict[str | None, list[int]] = {}
        for i, (mode, _) in enumerate(requests):
            by_mode.setdefault(mode, []).append(i)
        for mode, slots in by_mode.items():
            try:
                results = self._local.analyze_batch(mode, [requests[i][1] for i in slots])
            except Exception as exc:  # noqa: BLE001 - a mode the pipeline refuses fails its photos alone
                results = [exc] * len(slots)
            for i, result in zip(slots, results, strict=True):
                outcomes[i] = result
        return outcomes


def assigned_cpus() -> int:
    """The CPUs Ray gave this replica (``num_cpus`` in the Serve config), at least one."""
    import ray

    return max(1, int(ray.get_runtime_context().get_assigned_resources().get("CPU", 1)))


def limit_cpu_threads(threads: int) -> None:
    """torch (and any BLAS under numpy) gets as many threads as the replica has CPUs: more only fight the
    other replicas for the cores. An operator's own OMP_NUM_THREADS wins."""
    import os

    from threadpoolctl import threadpool_limits

    from immray.faces.device import limit_cpu_threads as limit_torch_threads

    if not os.environ.get("OMP_NUM_THREADS"):
        limit_torch_threads(threads)
        threadpool_limits(limits=threads, user_api="blas")


FaceAnalysisDeployment = serve.deployment(name="FaceAnalysis")(FaceAnalysisReplica)
