"""One actor of a backfill's pool: the face models loaded once, and each batch of Pending files analysed
and stored exactly as the API's indexing stores them (``services.indexing.analyze_files``: the same
claims, statuses, Reasons, faces, vectors and request notifications).

Ray Data calls it with a batch of ``file_id`` / ``event_id`` columns and gets back each file's new
``status`` (Indexed, Failed, or empty when another worker had finished it), its ``faces``, and when its
batch ``began`` and ``ended`` (wall clock, seconds since the epoch).
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np

from immray import vectors
from immray.jobs.face_analysis import InProcessAnalysis
from immray.observability import metrics
from immray.services import indexing
from immray.services.database import Database
from immray.settings import Settings
from immray.sources import sources_for


class BackfillAnalysis:
    """The callable class of ``map_batches``: built once per actor of the pool."""

    def __init__(self, settings: dict[str, Any], mode: str | None) -> None:
        self._settings = Settings.from_overrides(settings)
        _limit_cpu_threads()
        self._db = Database.connect(self._settings.resolved_database_url)
        vectors.attach(self._db, self._settings)
        self._sources = sources_for(self._settings)
        self._faces = InProcessAnalysis(self._settings)
        self._mode = mode
        self._embedder = self._faces.embedder_name(mode)  # loads the models before the first batch

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        began = time.time()
        files = [(int(f), str(e)) for f, e in zip(batch["file_id"], batch["event_id"], strict=True)]
        outcomes = indexing.analyze_files(
            self._db,
            self._sources,
            self._analyze_batch,
            self._embedder,
            files,
            max_attempts=self._settings.task_max_attempts,
            lease_seconds=self._settings.analysis_lease_seconds,
        )
        return {
            "file_id": np.array([file_id for file_id, _ in files], dtype=np.int64),
            "status": np.array([str(status or "") for status, _ in outcomes]),
            "faces": np.array([faces for _, faces in outcomes], dtype=np.int64),
            "began": np.full(len(files), began),  # the batch's wall clock, for the job's steady rate
            "ended": np.full(len(files), time.time()),
        }

    def _analyze_batch(self, items: list[bytes]) -> list:
        """The models on a batch, counted in immray's photos/faces metrics as the server's analysis is."""
        began = time.perf_counter()
        results = self._faces.analyze_batch(self._mode, items)
        metrics.photos_analysed(results, time.perf_counter() - began)
        return results


def _limit_cpu_threads() -> None:
    """torch and BLAS get as many threads as the CPUs Ray gave this actor (an operator's
    OMP_NUM_THREADS wins): more would fight the pool's other actors for the cores."""
    if os.environ.get("OMP_NUM_THREADS"):
        return
    import ray
    from threadpoolctl import threadpool_limits

    from immray.faces.device import limit_cpu_threads

    threads = max(1, int(ray.get_runtime_context().get_assigned_resources().get("CPU", 1)))
    limit_cpu_threads(threads)
    threadpool_limits(limits=threads, user_api="blas")
