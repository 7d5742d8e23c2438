"""Five landmarks per face and the aligned chip an embedder takes, both from the full-resolution image.

dlib's face descriptors expect dlib's chip: its 5-point shape predictor run from a dlib detector's box, then
``get_face_chips``. Both are reproduced here without dlib (``shape_predictor``: same landmarks as dlib for
the same box; ``chips``: the same pixels as dlib for the same landmarks). What differs is the box: faces are
now found by CenterFace, whose boxes sit elsewhere on the face than the boxes dlib's predictor was trained
on (dlib's HOG detector). So each detection is first mapped to the box dlib's detector would have drawn, by
a linear model of the detection's five points (and box) fitted on dev faces (``BOX_FROM_POINTS``), and the
predictor starts there. Measured on dev faces (LFW, 2-fold), against dlib's pipeline from its HOG boxes:
landmarks 0.009 eye distances off, descriptors 0.040 apart on average (p95 0.090) - less than dlib moves
them itself between its two detectors' boxes (0.046). From the raw CenterFace box the predictor lands 0.03
eye distances off (descriptors ~0.10 apart); aligning on CenterFace's own points, no predictor, ~0.15.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from immray.faces.chips import extract_chips
from immray.faces.shape_predictor import ShapePredictor, five_point_predictor

#: The order of the returned landmarks: dlib's 5-point convention (what ``quality.head_pose`` reads).
LANDMARK_ORDER = (
    "eye on image-right, outer corner",
    "eye on image-right, inner corner",
    "eye on image-left, outer corner",
    "eye on image-left, inner corner",
    "nose base",
)

# dlib's HOG box (left, top, right, bottom; right/bottom exclusive) from a CenterFace detection, in units of
# the detection's box: with c its centre and s the square root of its area, the features are the five points
# (x - cx) / s, (y - cy) / s in CenterFace order, the box's width / height, and 1; each column of the product
# gives (left - cx) / s, (top - cy) / s, (right - cx) / s, (bottom - cy) / s. Fitted by ridge least squares
# (lambda 0.01) on 497 dev faces (LFW) whose detection by the ``accurate`` CenterFace strategy matched a
# detection of dlib's HOG detector (see the module docstring for what it achieves).
BOX_FROM_POINTS = np.array(
    [[0.036824, -0.852008, 0.620804, -0.22587], [0.279039, 0.389898, 0.356926, 0.458403],
     [0.679324, 0.473563, 0.26915, 0.035488], [-0.17979, 0.468547, -0.301754, 0.337892],
     [-0.04651, 0.037122, 0.282211, 0.366353], [0.411725, 0.396108, -0.146718, -0.170115],
     [-0.178607, -0.374601, -0.24339, -0.418551], [-0.0402, -0.159779, 0.300571, 0.189864],
     [0.415325, 0.736187, -0.322187, -0.039883], [-0.506609, -0.121828, -0.268088, 0.124698],
     [-0.274575, -0.345648, 0.251279, 0.197559], [-0.357464, -0.426432, 0.390426, 0.320113]]
)  # fmt: skip
# The same from the box alone (width / height and 1), for detections that carry no landmarks.
BOX_FROM_BOX = np.array([[-0.257314, -0.29647, 0.080531, 0.04695], [-0.26961, -0.18112, 0.432107, 0.511293]])
#: Box variants (shift right, shift down as fractions of the box, scale) averaged over with ``ensemble``.
ENSEMBLE = ((0, 0, 1), (0.03, 0, 1), (-0.03, 0, 1), (0, 0.03, 1), (0, -0.03, 1), (0, 0, 1.04), (0, 0, 0.96))


class FaceAligner:
    """dlib-compatible landmarks and chips for detected faces. Load once per process (the predictor is read
    from its .dat, ~0.6 s) and share: it keeps no per-call state. The work is small numpy arithmetic (a few ms
    a face), so it runs on the CPU whatever ``device`` the other models use; ``device`` is accepted so every
    face model is built the same way."""

    def __init__(
        self, device: Any = "cpu", predictor: ShapePredictor | None = None, ensemble: bool = False
    ) -> None:
        self.device = device
        self.predictor = predictor or five_point_predictor()
        # Averaging the predictor over slightly moved boxes (ENSEMBLE) brings descriptors closer to dlib's
        # pipeline (0.037 instead of 0.042 on dev photos end to end, p95 0.076 instead of 0.090) for 7x
        # the predictor's cost (~2 ms a face in batches, so ~13 ms): off by default, for throughput.
        self.ensemble = ensemble

    def boxes(self, detections: Sequence[Any]) -> np.ndarray:
        """(n, 4) float boxes (left, top, right, bottom; right/bottom exclusive) where dlib's detector would
        have framed each detected face: the predictor's starting point."""
        out = np.zeros((len(detections), 4))
        for i, d in enumerate(detections):
            box = np.array([d.left, d.top, d.right, d.bottom], dtype=np.float64)
            points = getattr(d, "landmarks", None)
            out[i] = dlib_box(box, None if points is None else np.asarray(points, dtype=np.float64))
        return out

    def landmarks(self, pixels: np.ndarray, detections: Sequence[Any]) -> np.ndarray:
        """(n, 5, 2) landmarks in dlib's 5-point order (``LANDMARK_ORDER``), image pixels."""
        image = rgb(pixels)
        boxes = self.boxes(detections)
        if not self.ensemble:
            return self.predictor.predict(image, _inclusive(boxes))
        variants = [_moved(boxes, dx, dy, scale) for dx, dy, scale in ENSEMBLE]
        points = self.predictor.predict(image, _inclusive(np.concatenate(variants)))
        return points.reshape(len(ENSEMBLE), len(boxes), -1, 2).mean(axis=0)

    def align(
        self, pixels: np.ndarray, detections: Sequence[Any], size: int = 150, padding: float = 0.25
    ) -> tuple[list[tuple[tuple[float, float], ...]], np.ndarray]:
        """The five landmarks each chip was aligned on (dlib's 5-point order, image pixels) and the chips,
        (n, size, size, 3) uint8, cut like ``dlib.get_face_chips``. Pass all faces of an image in one call:
        dlib cuts the chips of an image together (see ``chips``)."""
        if size < 1 or padding < 0:
            raise ValueError(f"chip size must be >= 1 and padding >= 0, not {size} and {padding}")
        image = rgb(pixels)
        points = self.landmarks(image, detections)
        chips = extract_chips(image, points, size, padding)
        return [tuple((float(x), float(y)) for x, y in face) for face in points], chips


def dlib_box(box: np.ndarray, points: np.ndarray | None) -> np.ndarray:
    """dlib's HOG box for one detection (``box`` left, top, right, bottom; ``points`` (5, 2) in CenterFace
    order, or None)."""
    width, height = max(box[2] - box[0], 1e-6), max(box[3] - box[1], 1e-6)
    centre = np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])
    scale = float(np.sqrt(width * height))
    aspect = np.array([width / height, 1.0])
    if points is not None and points.shape == (5, 2) and np.isfinite(points).all():
        features = np.concatenate([((points - centre) / scale).reshape(-1), aspect])
        unit = features @ BOX_FROM_POINTS
    else:
        unit = aspect @ BOX_FROM_BOX
    return np.tile(centre, 2) + unit * scale


def _inclusive(boxes: np.ndarray) -> np.ndarray:
    """dlib's rectangles: whole pixels, right and bottom edge included, never empty."""
    out = np.round(np.nan_to_num(boxes, nan=0.0, posinf=1e9, neginf=-1e9)).clip(-1e9, 1e9)
    out[:, 2:] = np.maximum(out[:, 2:] - 1, out[:, :2])
    return out


def _moved(boxes: np.ndarray, dx: float, dy: float, scale: float) -> np.ndarray:
    size = boxes[:, 2:] - boxes[:, :2]
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2 + size * [dx, dy]
    return np.concatenate([centre - size * scale / 2, centre + size * scale / 2], axis=1)


def rgb(pixels: np.ndarray) -> np.ndarray:
    """The image as (H, W, 3) uint8: grey is repeated into three channels, an alpha channel dropped."""
    pixels = np.asarray(pixels)
    if pixels.dtype != np.uint8:
        raise ValueError(f"pixels must be uint8, not {pixels.dtype}")
    if pixels.ndim == 2:
        return np.repeat(pixels[:, :, None], 3, axis=2)
    if pixels.ndim != 3 or pixels.shape[2] not in (3, 4):
        raise ValueError(f"pixels must be (H, W, 3) RGB, not of shape {pixels.shape}")
    return pixels[:, :, :3]
