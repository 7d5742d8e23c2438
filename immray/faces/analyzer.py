"""Image bytes -> faces: decode, detect (downscaled), landmark and embed (full resolution), score."""

from __future__ import annotations

from functools import lru_cache

import dlib
import numpy as np

from immray.faces.align import FivePointAligner, points
from immray.faces.config import AnalyzerConfig
from immray.faces.decode import DecodedImage, decode_image
from immray.faces.detect import Detection
from immray.faces.embed import DlibResNetEmbedder, Embedder, MirroredEmbedder
from immray.faces.quality import face_quality, head_pose, sharpness
from immray.faces.results import AnalyzedImage, Boundary, Face
from immray.faces.strategy import DetectionStrategy, make_strategy


class Analyzer:
    """The face pipeline for one configuration. Build it once per process (``get_analyzer``): the models
    load in the constructor. Safe to share between threads, which take turns on each model."""

    def __init__(
        self,
        config: AnalyzerConfig,
        *,
        detector: DetectionStrategy | None = None,
        embedder: Embedder | None = None,
    ) -> None:
        self.config = config
        self.detector = detector or make_strategy(config)
        embedder = embedder or DlibResNetEmbedder()
        self.embedder = MirroredEmbedder(embedder) if config.mirror else embedder
        self.aligner = FivePointAligner()
        self._chip_size = int(getattr(self.embedder, "chip_size", 150))
        self._chip_padding = float(getattr(self.embedder, "chip_padding", 0.25))

    def analyze(self, data: bytes) -> AnalyzedImage:
        """Faces of the image in ``data``; raises ImageError for anything that is not a usable image."""
        decoded = decode_image(data, max_pixels=self.config.max_image_pixels)
        return AnalyzedImage(
            width=decoded.width,
            height=decoded.height,
            content_type=decoded.content_type,
            faces=self.faces(decoded),
        )

    def faces(self, decoded: DecodedImage) -> list[Face]:
        detections = self.detect(decoded)
        if not detections:
            return []
        pixels = decoded.pixels
        boxes = dlib_boxes(detections)
        shapes = self.aligner.landmarks(pixels, boxes)
        chips = self.aligner.chips(pixels, shapes, self._chip_size, self._chip_padding)
        embeddings = self.embedder.embed(chips)
        faces = [
            self._face(detection, points(shape), chip, embedding, decoded.width, decoded.height)
            for detection, shape, chip, embedding in zip(detections, shapes, chips, embeddings, strict=True)
        ]
        faces.sort(key=lambda f: (f.boundary.top, f.boundary.left))
        return faces

    def detect(self, decoded: DecodedImage) -> list[Detection]:
        """Face boxes in the image's displayed pixels, found by the configured detection strategy."""
        return self.detector.detect(decoded.image)

    def _face(
        self,
        detection: Detection,
        landmarks: tuple[tuple[float, float], ...],
        chip: np.ndarray,
        embedding: np.ndarray,
        width: int,
        height: int,
    ) -> Face:
        boundary = _clipped_boundary(detection, width, height)
        pose = head_pose(landmarks)
        sharp = sharpness(chip, self._chip_padding)
        face_px = min(detection.right - detection.left, detection.bottom - detection.top)
        return Face(
            boundary=boundary,
            confidence=detection.confidence,
            quality=face_quality(face_px, sharp, pose),
            sharpness=sharp,
            head_pose=pose,
            landmarks=landmarks,
            embedding=embedding,
        )


def dlib_boxes(detections: list[Detection]) -> list[dlib.rectangle]:
    """dlib's rectangles (right and bottom inclusive) for the landmark model."""
    return [
        dlib.rectangle(round(d.left), round(d.top), round(d.right) - 1, round(d.bottom) - 1)
        for d in detections
    ]


def _clipped_boundary(detection: Detection, width: int, height: int) -> Boundary:
    left = min(max(0, round(detection.left)), width - 1)
    top = min(max(0, round(detection.top)), height - 1)
    right = max(left + 1, min(width, round(detection.right)))
    bottom = max(top + 1, min(height, round(detection.bottom)))
    return Boundary(left=left, top=top, width=right - left, height=bottom - top)


@lru_cache(maxsize=8)
def get_analyzer(config: AnalyzerConfig | None = None) -> Analyzer:
    """The process's Analyzer for ``config`` (default config if None); the dlib models behind it are
    loaded once per process and shared by every config, each with one lock its users take turns on."""
    return Analyzer(config or AnalyzerConfig())
