"""What the face pipeline can be asked to do. Filled from immray.settings by the callers, not here."""

from __future__ import annotations

from dataclasses import dataclass

DETECTORS = ("accurate", "hog", "cnn")


@dataclass(frozen=True)
class AnalyzerConfig:
    """Frozen, hence hashable: one Analyzer (and one set of loaded models) per distinct config.

    - ``detector``: ``accurate`` (MMOD CNN where its budget allows, HOG checked by MMOD below; see
      ``strategy``), ``hog`` (dlib's frontal HOG detector alone: fast, misses turned faces) or ``cnn``
      (dlib's MMOD CNN alone, enlarged for ``min_face_px``: seconds per megapixel on CPU).
    - ``max_image_pixels``: images declaring more pixels are refused as ImageTooLarge before decoding.
    - ``detect_max_side``: larger images are downscaled to this longest side for detection only; faces are
      still landmarked and embedded from the full-resolution image.
    - ``min_face_px``: the smallest face side, in original pixels, detection must find; it sets how often
      the detection image is upsampled (both detectors find faces of about 80 px natively).
    - ``max_upsample``: a cap on those doublings, because each one quadruples time and memory. One doubling
      reaches 40 px faces in photos up to ``detect_max_side`` (2048 px); a 12-MP phone photo (4000 px,
      detected at 2048) then finds faces from ~78 px, where a second doubling (HOG over 8192x6144 px, ~6 s
      of CPU and 500 MB) would reach 40 px. Past the cap, the smallest face found grows.
    - ``mirror``: each descriptor is the average of the face's and its mirror image's (``MirroredEmbedder``):
      twice the descriptor time (18.7 ms more CPU per face on one OpenBLAS thread); the embedder's name changes with it, so
      stored vectors never mix. On by default: on the LFW dev set (accurate detection) the clustering engine
      gains 0.44 point of BCubed F1 in one batch (0.9741 -> 0.9785, MinFaces 2) and keeps its increments
      within 0.01 of the batch (`python -m immray.bench.quality`, `python -m immray.bench.mirror_quality`).
    """

    detector: str = "accurate"
    max_image_pixels: int = 100_000_000
    detect_max_side: int = 2048
    min_face_px: int = 40
    max_upsample: int = 1
    mirror: bool = True

    def __post_init__(self) -> None:
        if self.detector not in DETECTORS:
            raise ValueError(f"detector must be one of {', '.join(DETECTORS)}, not {self.detector!r}")
        for name in ("max_image_pixels", "detect_max_side", "min_face_px"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer")
        if self.max_upsample < 0:
            raise ValueError("max_upsample must be 0 or more")
