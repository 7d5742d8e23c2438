"""The analysis deployment seen from the ingress: what indexing jobs and the image actions call.

``ServeFaceAnalysis`` is ``jobs.face_analysis.FaceAnalysis`` over the deployment's handle: a photo whose
replica died (its process crashed, its node went away) is sent again, to another replica or the one Serve
starts instead, ``ANALYSIS_ATTEMPTS`` times at most; a photo's own error (``ImageError``) comes back as
itself. ``RemoteAnalyzer`` is the Analyzer-shaped view the image actions take.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from ray.exceptions import RayActorError, RayTaskError

from immray.faces import AnalyzedImage

log = logging.getLogger("immray.jobs")

ANALYSIS_ATTEMPTS = 3


class ServeFaceAnalysis:
    """The indexing jobs' face analysis (``jobs.face_analysis.FaceAnalysis``) on the analysis deployment."""

    def __init__(self, handle: Any, attempts: int = ANALYSIS_ATTEMPTS) -> None:
        self._handle = handle
        self._attempts = attempts
        self._names: dict[str | None, str] = {}

    def _call(self, method: str, *args: Any) -> Any:
        for attempt in range(1, self._attempts + 1):
            try:
                return getattr(self._handle, method).remote(*args).result()
            except RayTaskError as exc:  # the replica raised: the photo's own error (ImageError, ...)
                cause = exc.cause if isinstance(exc.cause, Exception) else exc
                raise cause from None
            except RayActorError:
                if attempt == self._attempts:
                    raise
                log.warning("an analysis replica died during %s; sending it again (%d)", method, attempt)
        raise AssertionError("unreachable")

    def analyze(self, mode: str | None, data: bytes) -> AnalyzedImage:
        return self._call("analyze", mode, data)

    def embedder_name(self, mode: str | None) -> str:
        if mode not in self._names:
            self._names[mode] = self._call("embedder_name", mode)
        return self._names[mode]

    def same_person_distance(self, mode: str | None) -> float:
        return float(self._call("same_person_distance", mode))

    def analyzer(self, mode: str | None = None) -> RemoteAnalyzer:
        """An Analyzer-shaped view for the image actions, which take an Analyzer."""
        return RemoteAnalyzer(self, mode)


@dataclass(frozen=True)
class EmbedderFacts:
    """What the image actions read of an embedder: its name and its same-person boundary."""

    name: str
    same_person_distance: float


class RemoteAnalyzer:
    """``analyze(data)`` and ``embedder`` of an Analyzer, answered by the analysis deployment."""

    def __init__(self, faces: ServeFaceAnalysis, mode: str | None) -> None:
        self._faces = faces
        self._mode = mode
        self._embedder: EmbedderFacts | None = None

    def analyze(self, data: bytes) -> AnalyzedImage:
        return self._faces.analyze(self._mode, data)

    @property
    def embedder(self) -> EmbedderFacts:
        if self._embedder is None:
            self._embedder = EmbedderFacts(
                self._faces.embedder_name(self._mode),
                self._faces.same_person_distance(self._mode),
            )
        return self._embedder
