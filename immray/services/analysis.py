"""The one place where Settings become the face pipeline's configuration.

Every caller that analyses images (indexing jobs, DetectImageFaces, CompareImageFaces, SearchImageFigureCluster,
`immray analyze`) gets its Analyzer here, so a new knob of ``AnalyzerConfig`` is mapped once.

A dataset may ask for another detection mode than the server's (its ``FaceDetectionMode`` WorkflowParameter):
``accurate`` or ``fast`` (CenterFace on a shrunk photo: a fifth of the cost, for huge libraries), or
``default``, the server's ``detector``. Only the
detector changes with the mode: the models are loaded once per process and shared by every mode, and the
embedder is the same, so faces found in either mode are compared and clustered together.
"""

from __future__ import annotations

from immray.faces import Analyzer, AnalyzerConfig, get_analyzer
from immray.settings import Settings

#: A dataset's FaceDetectionMode -> the detector it runs; ``default`` (or no mode) is the server's setting.
DETECTION_MODES = {"accurate": "accurate", "fast": "fast"}
#: Appended to a mode when the dataset's FaceAttributes is false: the mode string is what travels to the
#: analysis replicas and backfill actors, so it carries both per-dataset knobs.
WITHOUT_ATTRIBUTES = "+no-attributes"


def analysis_mode(detection_mode: str, attributes: bool) -> str:
    """The mode string for a dataset's FaceDetectionMode and FaceAttributes."""
    return detection_mode if attributes else detection_mode + WITHOUT_ATTRIBUTES


def analyzer_config(settings: Settings, mode: str | None = None) -> AnalyzerConfig:
    """``AnalyzerConfig`` from ``settings`` and a dataset's detection ``mode`` (None or ``default``: the
    server's detector); ValueError (with the reason) for values the pipeline refuses. A mode ending in
    ``WITHOUT_ATTRIBUTES`` leaves out age, gender and emotion."""
    attributes = True
    if mode is not None and mode.endswith(WITHOUT_ATTRIBUTES):
        mode, attributes = mode[: -len(WITHOUT_ATTRIBUTES)], False
    if mode is None or mode == "default":
        detector = settings.detector
    elif mode in DETECTION_MODES:
        detector = DETECTION_MODES[mode]
    else:
        raise ValueError(f"detection mode must be default, {', '.join(DETECTION_MODES)}, not {mode!r}")
    return AnalyzerConfig(
        detector=detector,
        max_image_pixels=settings.max_image_pixels,
        detect_max_side=settings.detect_max_side,
        min_face_px=settings.min_face_px,
        mirror=settings.mirror,
        embedder=settings.embedder,
        device=settings.device,
        attributes=attributes,
    )


def analyzer_for(settings: Settings, mode: str | None = None) -> Analyzer:
    """The process's Analyzer for ``settings`` and a dataset's detection ``mode`` (models are loaded once
    per process, whatever the mode)."""
    return get_analyzer(analyzer_config(settings, mode))
