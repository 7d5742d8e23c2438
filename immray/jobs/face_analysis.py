"""Where an indexing job's face analysis runs: in the job's own process, or in child processes.

dlib's Python bindings hold the GIL through a whole detector or ResNet call: two threads, each with a
model of its own, take twice as long as one (measured with MMOD). Threads of one process therefore analyse
one photo at a time, whatever the number of cores. A Celery worker is a process per job already (prefork),
so it analyses in its own process (:class:`InProcessAnalysis`). The embedded pool's threads hand the
analysis, bytes in and faces out, to child processes instead (:class:`ChildProcessAnalysis`): one per
worker thread, each loading the models once, so every core analyses photos. A child that dies (a crash in
native code on a malicious image) fails that photo alone; the next photo gets fresh children.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Protocol

from immray.faces import AnalyzedImage
from immray.services.analysis import analyzer_for
from immray.settings import Settings

log = logging.getLogger("immray.jobs")


def share_cores(processes: int) -> None:
    """Give this process, one of ``processes`` analysing photos side by side, its share of the cores for
    OpenBLAS (dlib's MMOD and ResNet run on it). More BLAS threads than cores only fight each other: two
    Celery worker processes with two BLAS threads each indexed no faster on two cores than one process.
    An operator's own OPENBLAS_NUM_THREADS wins."""
    from threadpoolctl import threadpool_limits

    if os.environ.get("OPENBLAS_NUM_THREADS"):
        return
    threadpool_limits(limits=max(1, (os.cpu_count() or 1) // max(1, processes)), user_api="blas")


class FaceAnalysis(Protocol):
    """What an indexing job asks: the faces of a photo in a detection mode, and the embedder's name."""

    def analyze(self, mode: str | None, data: bytes) -> AnalyzedImage: ...

    def embedder_name(self, mode: str | None) -> str: ...


class InProcessAnalysis:
    """The analysis in the calling process (Celery workers, one job per process)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    def analyze(self, mode: str | None, data: bytes) -> AnalyzedImage:
        return analyzer_for(self._settings, mode).analyze(data)

    def embedder_name(self, mode: str | None) -> str:
        return analyzer_for(self._settings, mode).embedder.name


class ChildProcessAnalysis:
    """The analysis in ``processes`` child processes (spawned, not forked: the server runs threads),
    started at the first photo, so a server that indexes nothing starts none."""

    def __init__(self, settings: Settings, processes: int) -> None:
        self._settings = settings
        self._processes = processes
        self._executor: ProcessPoolExecutor | None = None
        self._names: dict[str | None, str] = {}
        self._lock = threading.Lock()

    def _pool(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._executor is None:
                self._executor = ProcessPoolExecutor(
                    max_workers=self._processes,
                    mp_context=multiprocessing.get_context("spawn"),
                    initializer=_load_models,
                    initargs=(self._settings, self._processes),
                )
            return self._executor

    def _call(self, func, *args):
        executor = self._pool()
        try:
            return executor.submit(func, *args).result()
        except BrokenProcessPool:
            log.error("a face analysis process died; new ones start for the next photo")
            with self._lock:
                if self._executor is executor:
                    self._executor = None
            executor.shutdown(wait=False, cancel_futures=True)
            raise

    def analyze(self, mode: str | None, data: bytes) -> AnalyzedImage:
        return self._call(_analyze, mode, data)

    def embedder_name(self, mode: str | None) -> str:
        if mode not in self._names:
            try:
                self._names[mode] = self._call(_embedder_name, mode)
            except BrokenProcessPool:  # no photo at stake yet: ask fresh children once more
                self._names[mode] = self._call(_embedder_name, mode)
        return self._names[mode]

    def close(self) -> None:
        """Stop the children (after the pool's threads have ended: no analysis is waited for)."""
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)


# --- inside a child process ------------------------------------------------------------------------

_local: InProcessAnalysis | None = None  # this child's analysis, once _load_models has run


def _load_models(settings: Settings, processes: int) -> None:
    global _local
    # Ctrl-C reaches the whole process group: the children leave stopping to the server, which ends the
    # pool's threads, then the children (no KeyboardInterrupt tracebacks, no photo cut in the middle).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    share_cores(processes)
    _local = InProcessAnalysis(settings)
    _local.embedder_name(None)  # loads the server's default mode before the first photo arrives


def _analyze(mode: str | None, data: bytes) -> AnalyzedImage:
    assert _local is not None
    return _local.analyze(mode, data)


def _embedder_name(mode: str | None) -> str:
    assert _local is not None
    return _local.embedder_name(mode)
