"""Where an indexing job's face analysis runs: the interface, and its in-process implementation.

On Ray the indexing jobs of the ingress send the photos to the analysis deployment
(``immray.serve.analysis_client.ServeFaceAnalysis``), whose replicas run :class:`InProcessAnalysis`: each replica
loads the models once and runs the photos of a batch through them together. A replica that dies (a crash in
native code on a malicious image) costs the photos it held, which are sent again.
"""

from __future__ import annotations

from typing import Protocol

from immray.faces import AnalyzedImage, ImageError
from immray.services.analysis import analyzer_for
from immray.settings import Settings


class FaceAnalysis(Protocol):
    """What an indexing job asks: the faces of a photo in a detection mode, and the embedder's name."""

    def analyze(self, mode: str | None, data: bytes) -> AnalyzedImage: ...

    def embedder_name(self, mode: str | None) -> str: ...


class InProcessAnalysis:
    """The analysis in the calling process (an analysis replica, ``immray analyze``, the tests)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    def analyze(self, mode: str | None, data: bytes) -> AnalyzedImage:
        return analyzer_for(self._settings, mode).analyze(data)

    def analyze_batch(self, mode: str | None, items: list[bytes]) -> list[AnalyzedImage | ImageError]:
        """One outcome per photo: its faces or its ImageError (a bad photo fails alone)."""
        return analyzer_for(self._settings, mode).analyze_batch(items)

    def embedder_name(self, mode: str | None) -> str:
        return analyzer_for(self._settings, mode).embedder.name
