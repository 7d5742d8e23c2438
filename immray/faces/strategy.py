"""How faces are found in whole photos: at which scale each photo is shown to CenterFace, how photos are
batched, which boxes are kept. Two modes (``AnalyzerConfig.detector``), knobs in ``DetectorPlan``:

- ``accurate`` (the default; alias ``cnn``): the photo at its own scale up to ``budget_px`` pixels, so a
  face of ``min_face_px`` reaches the network at that size.
- ``fast`` (alias ``hog``): the photo shrunk so that a face of ``min_face_px`` is ~20 px for the network (a
  quarter of the pixels of ``accurate`` for a 1024-px photo).

A batch of photos is resized photo by photo (the scale depends on the photo alone), each placed top-left on
a black canvas whose sides are rounded up to a few sizes, and the photos of one canvas size run as one
tensor batch. A photo's faces therefore do not depend on the batch it came in. Boxes smaller than ``keep`` x
``min_face_px`` are dropped (the product does not keep such faces, and most false detections are tiny);
photos too small or too thin to hold such a face are not run at all.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, replace
from typing import Protocol

import numpy as np
import torch
from PIL import Image

from immray.faces.centerface import MULTIPLE
from immray.faces.config import AnalyzerConfig, canonical_detector
from immray.faces.detect import CenterFaceDetector, Detection


class DetectionStrategy(Protocol):
    name: str

    def detect(self, image: Image.Image) -> list[Detection]:
        """Faces of an RGB image, boxes in its pixels."""
        ...

    def detect_batch(self, images: list[Image.Image]) -> list[list[Detection]]:
        """Faces of each RGB image, boxes in each image's own pixels."""
        ...


@dataclass(frozen=True)
class DetectorPlan:
    """The knobs of a mode, chosen with `python -m immray.bench.detection` on one half of WIDER FACE's
    photos (1024 px wide) and checked on the other:

    - ``face_px``: the size, in network pixels, a face of ``min_face_px`` is shown at; sets the scale
      (CenterFace finds faces from ~10 px, reliably from ~20). Capped by ``budget_px``, by
      ``detect_max_side`` and by ``2 ** max_upsample`` (enlargement).
    - ``budget_px``: most pixels of the detection image; the network's cost is proportional.
    - ``threshold``: the heatmap score from which a face is taken (the score is its confidence).
    - ``overlap``: boxes overlapping more than this (IoU) are one face.
    - ``keep``: boxes whose shorter side is below ``keep`` x ``min_face_px`` (original pixels) are dropped.
    """

    face_px: float
    budget_px: int
    threshold: float
    overlap: float = 0.3
    keep: float = 0.8


#: Chosen on the tune half of wider-dev (accurate: 0.979 at >= 64 px, 0.950 at 32-64, 0.06 false per photo
#: among kept faces; fast: 0.986 / 0.910 / 0.08), checked on the other (0.974 / 0.934 / 0.02; fast 0.966 /
#: 0.897 / 0.01). A second, enlarged pass was not needed for these targets and is not run.
PLANS = {
    "accurate": DetectorPlan(face_px=40, budget_px=1536 * 1024, threshold=0.35, keep=0.6),
    "fast": DetectorPlan(face_px=20, budget_px=768 * 512, threshold=0.35, keep=0.6),
}

#: Most canvas pixels per forward pass (the batch is split above that): bounds the activations' memory.
BATCH_PIXELS = {"cpu": 8_000_000, "cuda": 64_000_000}


def canvas_side(side: int) -> int:
    """A side rounded up to a multiple of 32, then of 128 past 256 px: a few sizes, little padding."""
    quantum = MULTIPLE if side <= 256 else 4 * MULTIPLE
    return max(MULTIPLE, math.ceil(side / quantum) * quantum)


class CenterFaceStrategy:
    """CenterFace over whole photos, batched by canvas size (see the module docstring)."""

    def __init__(
        self, config: AnalyzerConfig, plan: DetectorPlan | None = None, device: torch.device | str = "cpu"
    ) -> None:
        self.name = canonical_detector(config.detector)
        self._config = config
        self._plan = plan or PLANS[self.name]
        self._detector = CenterFaceDetector(device)
        self._batch_pixels = BATCH_PIXELS["cuda" if self._detector.device.type == "cuda" else "cpu"]

    @property
    def plan(self) -> DetectorPlan:
        return self._plan

    def scale(self, width: int, height: int) -> float:
        """The factor a photo of this size is resized by for the network; 0 for photos that cannot hold a
        face the product keeps (too small or too thin)."""
        config, plan = self._config, self._plan
        if min(width, height) < plan.keep * config.min_face_px:
            return 0.0
        scale = min(
            plan.face_px / config.min_face_px,
            math.sqrt(plan.budget_px / (width * height)),
            config.detect_max_side / max(width, height),
            2.0**config.max_upsample,
        )
        return scale if min(width, height) * scale >= 1 else 0.0

    def detect(self, image: Image.Image) -> list[Detection]:
        return self.detect_batch([image])[0]

    def detect_batch(self, images: list[Image.Image]) -> list[list[Detection]]:
        out: list[list[Detection]] = [[] for _ in images]
        groups: dict[tuple[int, int], list[tuple[int, np.ndarray]]] = defaultdict(list)
        for index, image in enumerate(images):
            scale = self.scale(image.width, image.height)
            if scale == 0:
                continue
            pixels = _resized(image, scale)
            groups[(canvas_side(pixels.shape[0]), canvas_side(pixels.shape[1]))].append((index, pixels))
        for (height, width), members in groups.items():
            per_pass = max(1, self._batch_pixels // (height * width))
            for start in range(0, len(members), per_pass):
                chunk = members[start : start + per_pass]
                batch = torch.zeros((len(chunk), 3, height, width), dtype=torch.uint8)
                for slot, (_, pixels) in enumerate(chunk):
                    batch[slot, :, : pixels.shape[0], : pixels.shape[1]] = torch.from_numpy(pixels).permute(
                        2, 0, 1
                    )
                found = self._detector.detect(batch, self._plan.threshold, self._plan.overlap)
                for (index, pixels), faces in zip(chunk, found, strict=True):
                    out[index] = self._kept(images[index], pixels, faces)
        return out

    def _kept(self, image: Image.Image, pixels: np.ndarray, faces: list[Detection]) -> list[Detection]:
        """The faces in the photo's pixels, boxes clipped to it, those too small for the product dropped."""
        sx, sy = pixels.shape[1] / image.width, pixels.shape[0] / image.height
        smallest = self._plan.keep * self._config.min_face_px
        kept = []
        for face in faces:
            face = face.mapped(sx, sy)
            if face.side < smallest:
                continue
            clipped = replace(
                face,
                left=max(0.0, face.left),
                top=max(0.0, face.top),
                right=min(float(image.width), face.right),
                bottom=min(float(image.height), face.bottom),
            )
            if clipped.right - clipped.left >= 1 and clipped.bottom - clipped.top >= 1:
                kept.append(clipped)
        return kept


def _resized(image: Image.Image, scale: float) -> np.ndarray:
    """The RGB photo resized by ``scale`` as an (h, w, 3) uint8 array (at least 1x1)."""
    image = image if image.mode == "RGB" else image.convert("RGB")
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    if size == image.size:
        return np.array(image)  # a writable copy, as torch wants
    return np.array(image.resize(size, Image.Resampling.BILINEAR, reducing_gap=3.0 if scale < 1 else None))


def make_strategy(config: AnalyzerConfig, device: torch.device | str = "cpu") -> DetectionStrategy:
    """The detection strategy of ``config``'s mode on ``device``; the network is shared by every mode."""
    return CenterFaceStrategy(config, device=device)
