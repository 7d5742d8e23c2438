"""Image bytes -> faces, a batch at a time: decode each photo, detect in all of them as tensor batches, align
every face found, embed all the faces of the batch in one forward pass, score them.

One bad photo of a batch fails alone (its slot holds the ``ImageError``); the others go on. The models are
loaded once per process (``get_analyzer``) and shared by every configuration that uses them.
"""

from __future__ import annotations

import threading
from functools import lru_cache

import numpy as np

from immray.faces.align import FaceAligner
from immray.faces.attributes import AttributeEstimator, FaceAttributes, get_attribute_estimator
from immray.faces.config import AnalyzerConfig
from immray.faces.decode import DecodedImage, decode_image
from immray.faces.detect import Detection
from immray.faces.device import resolve_device
from immray.faces.embed import Embedder, MirroredEmbedder, make_embedder
from immray.faces.errors import ImageError
from immray.faces.quality import face_quality, head_pose, sharpness
from immray.faces.results import AnalyzedImage, Boundary, Face
from immray.faces.strategy import DetectionStrategy, make_strategy


class Analyzer:
    """The face pipeline for one configuration. Build it once per process (``get_analyzer``): the models
    load in the constructor. Safe to share between threads: a batch runs under one lock, because torch
    already spreads one batch over the cores it is given, and interleaved batches would only fight for them."""

    def __init__(
        self,
        config: AnalyzerConfig,
        *,
        detector: DetectionStrategy | None = None,
        embedder: Embedder | None = None,
        aligner: FaceAligner | None = None,
        attributes: AttributeEstimator | None = None,
    ) -> None:
        self.config = config
        self.device = resolve_device(config.device)
        self.detector = detector or make_strategy(config, device=self.device)
        embedder = embedder or make_embedder(config.embedder, device=self.device)
        self.embedder = MirroredEmbedder(embedder) if config.mirror else embedder
        self.aligner = aligner or FaceAligner(device=self.device)
        self.attributes = (
            (attributes or get_attribute_estimator(str(self.device))) if config.attributes else None
        )
        self._chip_size = int(getattr(self.embedder, "chip_size", 150))
        self._chip_padding = float(getattr(self.embedder, "chip_padding", 0.25))
        self._lock = threading.Lock()

    def analyze(self, data: bytes) -> AnalyzedImage:
        """Faces of the image in ``data``; raises ImageError for anything that is not a usable image."""
        (outcome,) = self.analyze_batch([data])
        if isinstance(outcome, ImageError):
            raise outcome
        return outcome

    def analyze_batch(self, items: list[bytes]) -> list[AnalyzedImage | ImageError]:
        """One outcome per photo, in order: its faces, or the ImageError that photo alone fails with."""
        decoded: list[DecodedImage | ImageError] = []
        for data in items:
            try:
                decoded.append(decode_image(data, max_pixels=self.config.max_image_pixels))
            except ImageError as exc:
                decoded.append(exc)
        usable = [d for d in decoded if isinstance(d, DecodedImage)]
        faces = iter(self.faces_batch(usable))
        return [
            d
            if isinstance(d, ImageError)
            else AnalyzedImage(width=d.width, height=d.height, content_type=d.content_type, faces=next(faces))
            for d in decoded
        ]

    def faces_batch(self, images: list[DecodedImage]) -> list[list[Face]]:
        """The faces of each decoded image, sorted top to bottom, then left to right."""
        if not images:
            return []
        with self._lock:
            detections = self.detector.detect_batch([image.image for image in images])
            aligned = [
                self.aligner.align(image.pixels, found, self._chip_size, self._chip_padding)
                if found
                else ([], None)
                for image, found in zip(images, detections, strict=True)
            ]
            chips = [c for _, c in aligned if c is not None and len(c)]
            embeddings = self.embedder.embed(np.concatenate(chips)) if chips else None
            attributes = self._attributes(images, detections)
        out: list[list[Face]] = []
        start = 0
        for image, found, (landmarks, image_chips), image_attributes in zip(
            images, detections, aligned, attributes, strict=True
        ):
            faces = []
            for i, detection in enumerate(found):
                assert embeddings is not None and image_chips is not None
                faces.append(
                    self._face(
                        detection,
                        landmarks[i],
                        image_chips[i],
                        embeddings[start + i],
                        image.width,
                        image.height,
                        image_attributes[i],
                    )
                )
            start += len(found)
            faces.sort(key=lambda f: (f.boundary.top, f.boundary.left))
            out.append(faces)
        return out

    def _attributes(
        self, images: list[DecodedImage], detections: list[list[Detection]]
    ) -> list[list[FaceAttributes | None]]:
        """Age, gender and emotion of every face of the batch (None each when attributes are off)."""
        if self.attributes is None:
            return [[None] * len(found) for found in detections]
        return self.attributes.estimate_batch(
            [
                (image.pixels, [(d.left, d.top, d.right, d.bottom) for d in found])
                for image, found in zip(images, detections, strict=True)
            ]
        )

    def detect(self, decoded: DecodedImage) -> list[Detection]:
        """Face boxes in the image's displayed pixels, found by the configured detection strategy."""
        return self.detector.detect_batch([decoded.image])[0]

    def _face(
        self,
        detection: Detection,
        landmarks: tuple[tuple[float, float], ...],
        chip: np.ndarray,
        embedding: np.ndarray,
        width: int,
        height: int,
        attributes: FaceAttributes | None = None,
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
            embedding=np.asarray(embedding, dtype=np.float32),
            attributes=attributes,
        )


def _clipped_boundary(detection: Detection, width: int, height: int) -> Boundary:
    left = min(max(0, round(detection.left)), width - 1)
    top = min(max(0, round(detection.top)), height - 1)
    right = max(left + 1, min(width, round(detection.right)))
    bottom = max(top + 1, min(height, round(detection.bottom)))
    return Boundary(left=left, top=top, width=right - left, height=bottom - top)


@lru_cache(maxsize=8)
def get_analyzer(config: AnalyzerConfig | None = None) -> Analyzer:
    """The process's Analyzer for ``config`` (default config if None); the torch modules behind it are
    loaded once per process and device, and shared by every config."""
    return Analyzer(config or AnalyzerConfig())
