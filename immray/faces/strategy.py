"""How faces are found in a whole photo: which detector passes run, at which scales, and how they merge.

- ``hog`` and ``cnn``: one pass of one dlib detector over the photo, shrunk to ``detect_max_side`` and
  enlarged (whole doublings) until a face of ``min_face_px`` reaches the detector's 80 px window.
- ``accurate`` (the default): dlib's MMOD CNN finds turned, blurred and partly hidden faces that HOG misses,
  but costs ~30 times as much per pixel, so it cannot look at a whole photo enlarged enough for 40 px faces.
  It looks at the whole photo at its own scale, or shrunk to ``mmod_budget_px`` (a 12-MP photo to a
  quarter of its side: faces from ~310 px). Below the size MMOD saw, HOG (on grey pixels: about as good,
  half the time) proposes faces down to ``min_face_px`` at a low threshold; confident proposals are kept,
  weak ones are shown to MMOD again on a small crop scaled so the face fills its window, and kept only if
  it finds a face there. Weak proposals MMOD already saw (large enough) or that overlap a face already
  found get no second look. Boxes of all passes merge by non-maximum suppression, the more confident box
  winning.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from PIL import Image

from immray.faces.config import AnalyzerConfig
from immray.faces.detect import NATIVE_MIN_FACE_PX, CnnDetector, Detection, HogDetector, upsample_for


class DetectionStrategy(Protocol):
    name: str

    def detect(self, image: Image.Image) -> list[Detection]:
        """Faces of an RGB image, boxes in its pixels."""
        ...


def resized(
    image: Image.Image, scale: float, box: tuple[float, float, float, float] | None = None
) -> np.ndarray:
    """``image`` (or the ``box`` region of it) resized by ``scale``, as dlib's (h, w, 3) uint8 array."""
    left, top, right, bottom = box or (0, 0, image.width, image.height)
    size = (max(1, round((right - left) * scale)), max(1, round((bottom - top) * scale)))
    if box is None and scale == 1.0:
        return np.asarray(image)
    return np.asarray(
        image.resize(size, Image.Resampling.BILINEAR, box=box, reducing_gap=3.0 if scale < 1 else None)
    )


def detection_scale(image: Image.Image, max_side: int) -> float:
    return min(1.0, max_side / max(image.width, image.height))


class SinglePass:
    """One detector over the whole photo: shrunk to ``detect_max_side``, then doubled until a face of
    ``min_face_px`` original pixels reaches the detector's window (at most ``max_upsample`` times)."""

    def __init__(self, config: AnalyzerConfig) -> None:
        self.name = config.detector
        self._detector = HogDetector() if config.detector == "hog" else CnnDetector()
        self._config = config

    def detect(self, image: Image.Image) -> list[Detection]:
        scale = detection_scale(image, self._config.detect_max_side)
        pixels = resized(image, scale)
        sx, sy = pixels.shape[1] / image.width, pixels.shape[0] / image.height
        upsample = upsample_for(self._config.min_face_px, scale, self._config.max_upsample)
        return [d.mapped(sx, sy) for d in self._detector.detect(pixels, upsample)]


@dataclass(frozen=True)
class AccuratePlan:
    """The knobs of the ``accurate`` strategy, chosen with `python -m immray.bench.detection` on 198 WIDER FACE photos
    (1024 px wide; recall at IoU 0.4 by the face's shorter side):

    - ``mmod_budget_px``: pixels MMOD may look at in its whole-photo pass; its cost is proportional (about
      2 s of one core for 1024x768 with OpenBLAS). Shrinking it to 600k px saves a fifth of the time and
      loses ~1 point of recall at >= 64 px.
    - ``propose`` / ``accept``: HOG scores from which a box is a candidate / is kept without a second look.
      HOG at 0 finds 0.52 of the 32-64 px faces; its candidates down to -1 hold 0.74 of them (and ten
      false ones per photo), MMOD's second look keeps 0.70 with no more false detections. -0.8 halves the
      second looks and finds 0.68.
    - ``verify_px``: the size a candidate is scaled to for MMOD's second look (its window is 80 px);
      ``verify_margin``: context around it, in box sides. 80 px with 0.25 is a third cheaper per look and
      confirms 0.67 instead of 0.70.
    - ``overlap``: boxes overlapping more than this (IoU) are one face.
    """

    mmod_budget_px: int = 1024 * 768
    propose: float = -1.0
    accept: float = 0.0
    verify_px: int = 90
    verify_margin: float = 0.4
    overlap: float = 0.3


class Accurate:
    """MMOD on the whole photo as far as its budget goes, HOG below that with MMOD checking weak finds."""

    name = "accurate"

    def __init__(self, config: AnalyzerConfig, plan: AccuratePlan | None = None) -> None:
        self._config = config
        self._plan = plan or AccuratePlan()
        self._hog = HogDetector()
        self._cnn = CnnDetector()

    def detect(self, image: Image.Image) -> list[Detection]:
        plan, config = self._plan, self._config
        scale = detection_scale(image, config.detect_max_side)
        upsample = upsample_for(config.min_face_px, scale, config.max_upsample)
        affordable = math.sqrt(plan.mmod_budget_px / (image.width * image.height))
        mmod_scale = min(1.0, affordable)  # shrunk to the budget, never enlarged: HOG is cheaper below 80 px
        found = self._whole(image, mmod_scale)
        reach = NATIVE_MIN_FACE_PX / mmod_scale  # the smallest face MMOD's pass saw, original pixels
        grey = resized(image.convert("L"), scale)
        sx, sy = grey.shape[1] / image.width, grey.shape[0] / image.height
        proposals = [d.mapped(sx, sy) for d in self._hog.detect(grey, upsample, plan.propose)]
        found = merge(found + [d for d in proposals if d.score >= plan.accept], plan.overlap)
        for weak in sorted((d for d in proposals if d.score < plan.accept), key=lambda d: -d.score):
            if weak.side < reach and not _overlaps_any(weak, found, plan.overlap):
                found = merge(found + self._second_look(image, weak), plan.overlap)
        return found

    def _whole(self, image: Image.Image, scale: float) -> list[Detection]:
        pixels = resized(image, scale)
        sx, sy = pixels.shape[1] / image.width, pixels.shape[0] / image.height
        return [d.mapped(sx, sy) for d in self._cnn.detect(pixels)]

    def _second_look(self, image: Image.Image, weak: Detection) -> list[Detection]:
        """MMOD on the weak box and some context around it, scaled so the face fills its window."""
        side = max(weak.right - weak.left, weak.bottom - weak.top)
        margin = self._plan.verify_margin * side
        box = (
            max(0.0, weak.left - margin),
            max(0.0, weak.top - margin),
            min(float(image.width), weak.right + margin),
            min(float(image.height), weak.bottom + margin),
        )
        pixels = resized(image, self._plan.verify_px / side, box)
        sx, sy = pixels.shape[1] / (box[2] - box[0]), pixels.shape[0] / (box[3] - box[1])
        return [d.mapped(sx, sy, box[0], box[1]) for d in self._cnn.detect(pixels)]


def _iou(a: Detection, b: Detection) -> float:
    width = min(a.right, b.right) - max(a.left, b.left)
    height = min(a.bottom, b.bottom) - max(a.top, b.top)
    if width <= 0 or height <= 0:
        return 0.0
    inter = width * height
    union = (a.right - a.left) * (a.bottom - a.top) + (b.right - b.left) * (b.bottom - b.top) - inter
    return inter / union


def _overlaps_any(box: Detection, others: list[Detection], threshold: float) -> bool:
    return any(_iou(box, other) > threshold for other in others)


def merge(detections: list[Detection], overlap: float) -> list[Detection]:
    """Non-maximum suppression: the most confident box of each group overlapping above ``overlap`` stays."""
    kept: list[Detection] = []
    for detection in sorted(detections, key=lambda d: -d.confidence):
        if not _overlaps_any(detection, kept, overlap):
            kept.append(detection)
    return kept


def make_strategy(config: AnalyzerConfig) -> DetectionStrategy:
    if config.detector == "accurate":
        return Accurate(config)
    return SinglePass(config)
