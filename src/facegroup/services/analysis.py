"""The one place where Settings become the face pipeline's configuration.

Every caller that analyses images (indexing jobs, DetectImageFaces, CompareImageFaces, SearchImageFigureCluster,
`facegroup analyze`) gets its Analyzer here, so a new knob of ``AnalyzerConfig`` is mapped once.
"""

from __future__ import annotations

from facegroup.faces import Analyzer, AnalyzerConfig, get_analyzer
from facegroup.settings import Settings


def analyzer_config(settings: Settings) -> AnalyzerConfig:
    """``AnalyzerConfig`` from ``settings``; ValueError (with the reason) for values the pipeline refuses."""
    return AnalyzerConfig(
        detector=settings.detector,
        max_image_pixels=settings.max_image_pixels,
        detect_max_side=settings.detect_max_side,
        min_face_px=settings.min_face_px,
    )


def analyzer_for(settings: Settings) -> Analyzer:
    """The process's Analyzer for ``settings`` (models are loaded once per process)."""
    return get_analyzer(analyzer_config(settings))
