"""dlib's 5-point shape predictor (eye corners and nose base) in numpy, read from its ``.dat`` file at load.

The predictor is a cascade of regression-tree forests (Kazemi & Sullivan 2014, dlib's
``image_processing/shape_predictor.h``, Boost Software License; this is an independent implementation).
Starting from the mean shape placed in the face box, each cascade level samples grey pixels at points
attached to the current shape, and every tree of the level walks down by comparing differences of two
sampled pixels with a threshold, its leaf adding an offset to the shape. Everything here follows dlib step by
step, vectorised over the faces of an image: the box mapping (box corners, right/bottom inclusive), the
similarity transform from the mean shape to the current one (Umeyama, as ``find_similarity_transform``),
pixel positions rounded to the nearest pixel, pixels outside the image read as 0, grey as the integer mean of
R, G and B, offsets added in float32 one tree after another, and the final points rounded to whole pixels.

The file is dlib's serialization of ``shape_predictor`` (version 1): the mean shape (a float matrix), the
forests (per level: trees, each with its splits ``(idx1, idx2, threshold)`` and leaf vectors), then per level
the anchor index and offset of every sampled pixel. Every number in it is a dlib integer (a byte holding the
length, 0x80 set for a negative number, then that many little-endian bytes); a float is two of them, a
mantissa and a binary exponent. The file (9 MB) is tokenised once, then decoded by numpy (~0.6 s).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from immray.faces.chips import similarity_transform
from immray.faces.shipped import face_recognition_model

MODEL_FILE = "shape_predictor_5_face_landmarks.dat"


class ShapePredictorFormatError(ValueError):
    """The file is not a dlib shape predictor this reader understands."""


def model_path() -> Path:
    """The .dat inside the installed ``face_recognition_models`` package."""
    return face_recognition_model(MODEL_FILE)


@dataclass(frozen=True)
class _Level:
    """One cascade level: T trees of the same depth over P sampled pixels."""

    anchor: np.ndarray  # (P,) index of the shape point each sampled pixel hangs on
    delta: np.ndarray  # (P, 2) float32 offset from that point, in mean-shape coordinates
    idx1: np.ndarray  # (T, S) pixel indices compared at each split
    idx2: np.ndarray  # (T, S)
    thresh: np.ndarray  # (T, S) float32
    leaves: np.ndarray  # (T, S + 1, 2K) float32 shape offsets


class ShapePredictor:
    """The predictor read from ``path`` (dlib's 5-point model by default). Call ``predict`` with an image
    and boxes; it holds no per-call state, so one instance serves every thread."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.initial_shape, self.levels = _read(Path(path) if path else model_path())
        self.num_parts = self.initial_shape.shape[0]

    def predict(self, pixels: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """Landmarks (n, K, 2) float64 in image pixels (whole numbers, as dlib returns them) for ``boxes``
        (n, 4) ``left, top, right, bottom`` with right/bottom inclusive, as dlib's rectangles, on an
        (H, W, 3) uint8 RGB (or (H, W) grey) image."""
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        n = boxes.shape[0]
        if n == 0:
            return np.zeros((0, self.num_parts, 2), dtype=np.float64)
        height, width = pixels.shape[:2]
        origin = boxes[:, None, 0:2]  # (n, 1, 2) the box's top-left corner
        extent = (boxes[:, 2:4] - boxes[:, 0:2])[:, None, :]  # (n, 1, 2) (0,0)->tl, (1,1)->br
        shape = np.repeat(self.initial_shape[None], n, axis=0)  # (n, K, 2) float32, box-normalised
        rows = np.arange(n)[:, None]
        for level in self.levels:
            tform = similarity_transform(self.initial_shape.astype(np.float64), shape.astype(np.float64))
            matrix = tform[:, :, :2].astype(np.float32)  # dlib casts the 2x2 part to float
            points = np.matmul(level.delta[None], matrix.transpose(0, 2, 1)) + shape[:, level.anchor, :]
            image_points = origin + extent * points.astype(np.float64)
            x = np.floor(image_points[..., 0] + 0.5).astype(np.int64)
            y = np.floor(image_points[..., 1] + 0.5).astype(np.int64)
            inside = (x >= 0) & (x < width) & (y >= 0) & (y < height)
            sampled = _grey(pixels[np.clip(y, 0, height - 1), np.clip(x, 0, width - 1)])
            values = np.where(inside, sampled, 0).astype(np.float32)  # (n, P)
            node = np.zeros((n, level.idx1.shape[0]), dtype=np.int64)  # (n, T)
            trees = np.arange(level.idx1.shape[0])[None, :]
            splits = level.idx1.shape[1]
            while True:
                inner = node < splits
                if not inner.any():
                    break
                at = np.minimum(node, splits - 1)
                diff = values[rows, level.idx1[trees, at]] - values[rows, level.idx2[trees, at]]
                left = diff > level.thresh[trees, at]
                node = np.where(inner, np.where(left, 2 * node + 1, 2 * node + 2), node)
            leaf = level.leaves[trees, node - splits]  # (n, T, 2K)
            # float32, one tree after another, as dlib adds them (accumulate is sequential, not pairwise)
            steps = np.concatenate([shape.reshape(n, 1, -1), leaf], axis=1)
            shape = np.add.accumulate(steps, axis=1, dtype=np.float32)[:, -1].reshape(n, -1, 2)
        points = origin + extent * shape.astype(np.float64)
        return np.floor(points + 0.5)


def _grey(sampled: np.ndarray) -> np.ndarray:
    """dlib's ``get_pixel_intensity`` of sampled pixels (..., 3) RGB or (...) grey: for RGB, the integer
    mean of the three channels."""
    if sampled.ndim == 2:
        return sampled.astype(np.int32)
    return sampled[..., :3].astype(np.int32).sum(axis=-1) // 3


# ---------------------------------------------------------------------------------------------- reading


class _Tokens:
    """The file as a sequence of dlib integers, read front to back."""

    def __init__(self, data: bytes) -> None:
        buffer = np.frombuffer(data, dtype=np.uint8)
        starts = []
        pos, end = 0, len(data)
        while pos < end:  # every value is one header byte plus (header & 0x0f) bytes
            starts.append(pos)
            pos += 1 + (data[pos] & 0x0F)
        if pos != end:
            raise ShapePredictorFormatError("the file ends inside a number")
        start = np.asarray(starts, dtype=np.int64)
        head = buffer[start]
        size = (head & 0x0F).astype(np.int64)
        if (size > 8).any() or (head & 0x70).any():
            raise ShapePredictorFormatError("bad integer header: not a dlib serialization")
        padded = np.concatenate([buffer, np.zeros(8, dtype=np.uint8)])
        values = np.zeros(len(start), dtype=np.uint64)
        for k in range(8):
            byte = padded[start + 1 + k].astype(np.uint64)
            values |= np.where(k < size, byte, 0).astype(np.uint64) << np.uint64(8 * k)
        signed = values.astype(np.int64)  # magnitudes fit: dlib writes at most 8 bytes, all < 2**63 here
        self.values = np.where(head & 0x80, -signed, signed)
        self.pos = 0

    def take(self, count: int) -> np.ndarray:
        if count < 0 or self.pos + count > len(self.values):
            raise ShapePredictorFormatError(f"unexpected end of file at value {self.pos}")
        out = self.values[self.pos : self.pos + count]
        self.pos += count
        return out

    def one(self) -> int:
        return int(self.take(1)[0])

    def floats(self, count: int) -> np.ndarray:
        pairs = self.take(2 * count).reshape(count, 2)
        return np.ldexp(pairs[:, 0].astype(np.float64), pairs[:, 1]).astype(np.float32)

    def column(self) -> np.ndarray:
        """A ``matrix<float,0,1>``: -rows, -cols, then the values."""
        rows, cols = -self.one(), -self.one()
        if rows < 0 or cols != 1:
            raise ShapePredictorFormatError(f"expected a column vector, found {rows}x{cols}")
        return self.floats(rows)


def _read(path: Path) -> tuple[np.ndarray, list[_Level]]:
    tokens = _Tokens(path.read_bytes())
    if tokens.one() != 1:
        raise ShapePredictorFormatError("shape_predictor version is not 1")
    initial = tokens.column()
    if initial.size == 0 or initial.size % 2:
        raise ShapePredictorFormatError(f"mean shape of {initial.size} values")
    forests = [_forest(tokens, initial.size) for _ in range(tokens.one())]
    anchors = [tokens.take(tokens.one()) for _ in range(tokens.one())]
    deltas = []
    for _ in range(tokens.one()):
        count = tokens.one()
        deltas.append(tokens.floats(2 * count).reshape(count, 2))
    if tokens.pos != len(tokens.values):
        raise ShapePredictorFormatError(f"{len(tokens.values) - tokens.pos} values left after the model")
    if not (len(forests) == len(anchors) == len(deltas)):
        raise ShapePredictorFormatError("forests, anchors and offsets disagree on the number of levels")
    levels = []
    for (idx1, idx2, thresh, leaves), anchor, delta in zip(forests, anchors, deltas, strict=True):
        if len(anchor) != len(delta) or idx1.max() >= len(delta) or idx2.max() >= len(delta):
            raise ShapePredictorFormatError("a split reads a pixel the level does not sample")
        if anchor.max() >= initial.size // 2:
            raise ShapePredictorFormatError("a sampled pixel hangs on a point the shape does not have")
        levels.append(_Level(anchor.astype(np.int64), delta, idx1, idx2, thresh, leaves))
    return initial.reshape(-1, 2), levels


def _forest(tokens: _Tokens, shape_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One level's trees. dlib grows every tree of a predictor to the same depth, so each tree is the same
    run of values (split count, splits, leaf count, leaves), read for all trees at once as one block:
    idx1, idx2 (T, S), thresholds (T, S) and leaves (T, S + 1, shape_size)."""
    count = tokens.one()
    if count < 1:
        raise ShapePredictorFormatError("a cascade level without trees")
    splits = int(tokens.values[tokens.pos]) if tokens.pos < len(tokens.values) else -1
    if splits < 1:
        raise ShapePredictorFormatError("a tree without splits")
    leaf_len = 2 + 2 * shape_size  # -rows, -cols, then (mantissa, exponent) per value
    tree_len = 1 + 4 * splits + 1 + (splits + 1) * leaf_len
    block = tokens.take(count * tree_len).reshape(count, tree_len)
    raw = block[:, 1 : 1 + 4 * splits].reshape(count, splits, 4)  # idx1, idx2, threshold mantissa, exponent
    leaves = block[:, 2 + 4 * splits :].reshape(count, splits + 1, leaf_len)
    if (
        (block[:, 0] != splits).any()
        or (block[:, 1 + 4 * splits] != splits + 1).any()
        or (leaves[:, :, 0] != -shape_size).any()
        or (leaves[:, :, 1] != -1).any()
    ):
        raise ShapePredictorFormatError("the trees of a level are not all complete and of the same depth")
    thresh = np.ldexp(raw[..., 2].astype(np.float64), raw[..., 3]).astype(np.float32)
    pairs = leaves[:, :, 2:].reshape(count, splits + 1, shape_size, 2)
    values = np.ldexp(pairs[..., 0].astype(np.float64), pairs[..., 1]).astype(np.float32)
    return raw[..., 0].copy(), raw[..., 1].copy(), thresh, values


@lru_cache(maxsize=1)
def five_point_predictor() -> ShapePredictor:
    """dlib's 5-point model, read once per process."""
    return ShapePredictor()
