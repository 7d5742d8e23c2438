"""Aligned face chips cut the way dlib's ``get_face_chips`` cuts them, in numpy, all faces of an image at once.

dlib's face descriptors were trained on these chips, so every step follows dlib (``get_face_chip_details``
and ``extract_image_chips`` in ``image_transforms/interpolation.h``, ``pyramid_down<2>`` in
``image_pyramid.h``; Boost Software License; this is an independent implementation):

1. the five landmarks are matched, least squares, by a similarity transform to dlib's mean face template
   placed in a ``size``-px square with ``padding`` around it; its angle and scale give a rotated rectangle
   in the image (``chip_details``);
2. when that rectangle is much larger than the chip, plain bilinear sampling would alias, so dlib builds an
   image pyramid (5-tap [1 4 6 4 1] filter, halving, integer arithmetic) over the part of the image that
   all chips of the image need, and samples each chip from the level just larger than the chip;
3. each chip pixel is bilinearly interpolated (float64, truncated to uint8); pixels whose 2x2 neighbourhood
   leaves the image are black.

Because the pyramid's grid starts at the corner of the region covering *all* chips of the image, a chip
depends (slightly) on the other faces passed with it: pass all faces of an image together, as dlib does.
"""

from __future__ import annotations

import math

import numpy as np

#: dlib's 5-point mean face (get_face_chip_details): eye corners (image-right eye outer, inner; image-left
#: eye outer, inner) and nose base, in a unit square.
TEMPLATE = np.array(
    [[0.8595674595992, 0.2134981538014], [0.6460604764104, 0.2289674387677],
     [0.1205750620789, 0.2137274526848], [0.3340850613712, 0.2290642403242],
     [0.4901123135679, 0.6277975316475]]
)  # fmt: skip


def template_points(size: int, padding: float) -> np.ndarray:
    """Where the five points land in a chip of ``size`` px with ``padding`` (a fraction of the face)."""
    return (padding + TEMPLATE) / (2 * padding + 1) * size


def similarity_transform(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """(n, 2, 3) least-squares similarity transforms (Umeyama) taking ``source`` (K, 2) or (n, K, 2) onto
    ``target`` (n, K, 2), as dlib's ``find_similarity_transform``."""
    target = np.asarray(target, dtype=np.float64)
    source = np.broadcast_to(np.asarray(source, dtype=np.float64), target.shape)
    count = source.shape[1]
    mean_s = source.mean(axis=1)
    mean_t = target.mean(axis=1)
    ds, dt = source - mean_s[:, None], target - mean_t[:, None]
    sigma = (ds**2).sum(axis=(1, 2)) / count
    cov = np.einsum("nki,nkj->nij", dt, ds) / count
    u, d, vt = np.linalg.svd(cov)
    signs = np.ones((cov.shape[0], 2))
    det_cov = np.linalg.det(cov)
    flip = (det_cov < 0) | ((det_cov == 0) & (np.linalg.det(u) * np.linalg.det(vt) < 0))
    signs[flip, 1] = -1  # the axis of the smaller singular value (numpy sorts them descending)
    rotation = np.einsum("nij,nj,njk->nik", u, signs, vt)
    safe = np.where(sigma != 0, sigma, 1.0)
    scale = np.where(sigma != 0, (d * signs).sum(axis=1) / safe, 1.0)
    matrix = scale[:, None, None] * rotation
    translation = mean_t - np.einsum("nij,nj->ni", matrix, mean_s)
    return np.concatenate([matrix, translation[:, :, None]], axis=2)


def chip_rects(landmarks: np.ndarray, size: int, padding: float) -> tuple[np.ndarray, np.ndarray]:
    """dlib's ``chip_details`` for each face: the rectangles (n, 4) ``l, t, r, b`` (double, inclusive ends,
    before rotation) and angles (n,) in radians."""
    tform = similarity_transform(template_points(size, padding), landmarks)
    m = tform[:, :, :2]
    p = m[:, :, 0]  # M @ (1, 0)
    angle = np.arctan2(p[:, 1], p[:, 0])
    scale = np.hypot(p[:, 0], p[:, 1])
    centre = m @ np.array([size / 2.0, size / 2.0]) + tform[:, :, 2]
    half = (size * scale - 1) / 2  # centered_drect: width - 1 between the ends
    rects = np.stack([centre[:, 0] - half, centre[:, 1] - half, centre[:, 0] + half, centre[:, 1] + half], 1)
    return rects, angle


def _rect_down(rects: np.ndarray) -> np.ndarray:
    """pyramid_down<2>::rect_down: each corner p -> p/2 - (1.25, 0.75)."""
    return rects / 2.0 - np.array([1.25, 0.75, 1.25, 0.75])


def _area(rects: np.ndarray) -> np.ndarray:
    width = rects[..., 2] - rects[..., 0] + 1
    height = rects[..., 3] - rects[..., 1] + 1
    empty = (rects[..., 0] > rects[..., 2]) | (rects[..., 1] > rects[..., 3])
    return np.where(empty, 0.0, width * height)


def _corners(rects: np.ndarray, angles: np.ndarray) -> np.ndarray:
    """(n, 4, 2) corners tl, tr, bl, br of each rectangle rotated by its angle about its centre."""
    left, top, right, bottom = rects.T
    corners = np.stack(
        [
            np.stack([left, top], 1),
            np.stack([right, top], 1),
            np.stack([left, bottom], 1),
            np.stack([right, bottom], 1),
        ],
        1,
    )
    centre = np.stack([(left + right) / 2, (top + bottom) / 2], 1)[:, None, :]
    cos, sin = np.cos(angles)[:, None], np.sin(angles)[:, None]
    offset = corners - centre
    rotated = np.stack(
        [cos * offset[..., 0] - sin * offset[..., 1], sin * offset[..., 0] + cos * offset[..., 1]], -1
    )
    return rotated + centre


def pyramid_down(image: np.ndarray) -> np.ndarray:
    """One level of dlib's ``pyramid_down<2>`` on an RGB uint8 image: [1 4 6 4 1]^2 / 256 (truncated),
    keeping every other row and column from the third; ((H-3)//2, (W-3)//2) pixels, empty if H or W <= 8."""
    height, width = image.shape[:2]
    if height <= 8 or width <= 8:
        return np.zeros((0, 0) + image.shape[2:], dtype=np.uint8)
    src = image.astype(np.int32)
    out_w = (width - 3) // 2
    out_h = (height - 3) // 2
    cols = [src[:, k : k + 2 * out_w : 2] for k in range(5)]
    rows = cols[0] + 4 * cols[1] + 6 * cols[2] + 4 * cols[3] + cols[4]  # (H, out_w)
    parts = [rows[k : k + 2 * out_h : 2] for k in range(5)]
    down = parts[0] + 4 * parts[1] + 6 * parts[2] + 4 * parts[3] + parts[4]
    return (down // 256).astype(np.uint8)


def _bilinear(image: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """dlib's ``interpolate_bilinear`` + black background: (..., C) float64 samples, 0 where the 2x2
    neighbourhood leaves the image; truncated to uint8 like dlib's ``assign_pixel``."""
    height, width = image.shape[:2]
    left = np.floor(x)
    top = np.floor(y)
    inside = (left >= 0) & (top >= 0) & (left + 1 <= width - 1) & (top + 1 <= height - 1)
    li = np.clip(left, 0, max(width - 2, 0)).astype(np.int64)
    ti = np.clip(top, 0, max(height - 2, 0)).astype(np.int64)
    fx = (x - left)[..., None]
    fy = (y - top)[..., None]
    if width < 2 or height < 2:
        return np.zeros(x.shape + image.shape[2:], dtype=np.uint8)
    img = image.astype(np.float64)
    tl, tr = img[ti, li], img[ti, li + 1]
    bl, br = img[ti + 1, li], img[ti + 1, li + 1]
    value = (1 - fy) * ((1 - fx) * tl + fx * tr) + fy * ((1 - fx) * bl + fx * br)
    value = np.where(inside[..., None], value, 0.0)
    return np.clip(value, 0, 255).astype(np.uint8)  # truncation, as dlib assigns a double to a byte


def extract_chips(
    image: np.ndarray, landmarks: np.ndarray, size: int = 150, padding: float = 0.25
) -> np.ndarray:
    """Chips (n, size, size, 3) uint8 for five-point ``landmarks`` (n, 5, 2) in dlib's order on an
    (H, W, 3) uint8 RGB image, as ``dlib.get_face_chips(image, shapes, size, padding)``."""
    landmarks = np.asarray(landmarks, dtype=np.float64).reshape(-1, 5, 2)
    n = landmarks.shape[0]
    out = np.zeros((n, size, size, 3), dtype=np.uint8)
    if n == 0 or image.shape[0] == 0 or image.shape[1] == 0:
        return out
    height, width = image.shape[:2]
    rects, angles = chip_rects(landmarks, size, padding)
    chip_area = float(size * size)

    # the pyramid depth each chip needs, and the part of the image all chips need (dlib's bounding_box)
    box = None  # integer l, t, r, b (inclusive)
    max_depth = 0
    corners = _corners(rects, angles)
    for i in range(n):
        depth, grow = 0, 2.0
        rect = _rect_down(rects[i])
        while _area(rect) > chip_area:
            rect = _rect_down(rect)
            depth += 1
            grow = grow * 2 + 2
        lo = corners[i].min(axis=0) - grow
        hi = corners[i].max(axis=0) + grow
        clipped = (max(lo[0], 0.0), max(lo[1], 0.0), min(hi[0], width - 1.0), min(hi[1], height - 1.0))
        rounded = tuple(math.floor(v + 0.5) for v in clipped)  # drectangle -> rectangle
        if rounded[0] <= rounded[2] and rounded[1] <= rounded[3]:
            box = rounded if box is None else (
                min(box[0], rounded[0]), min(box[1], rounded[1]), max(box[2], rounded[2]), max(box[3], rounded[3])
            )  # fmt: skip
        max_depth = max(max_depth, depth)
    if box is None:  # every chip lies wholly outside the image: dlib's empty region gives black chips
        box = (0, 0, -1, -1)
    region = image[box[1] : box[3] + 1, box[0] : box[2] + 1]
    levels = []
    for _ in range(max_depth):
        levels.append(pyramid_down(levels[-1] if levels else region))

    edge = size - 1
    grid = np.arange(size, dtype=np.float64)
    for i in range(n):
        level = -1
        rect = rects[i] - np.array([box[0], box[1], box[0], box[1]], dtype=np.float64)
        while _area(_rect_down(rect)) > chip_area:
            level += 1
            rect = _rect_down(rect)
        tl, tr, bl, _ = _corners(rect[None], angles[i : i + 1])[0]
        # chip (0,0) -> tl, (size-1, 0) -> tr, (0, size-1) -> bl (find_affine_transform of three points)
        ax = (tr - tl) / edge if edge else np.zeros(2)
        ay = (bl - tl) / edge if edge else np.zeros(2)
        x = tl[0] + grid[None, :] * ax[0] + grid[:, None] * ay[0]
        y = tl[1] + grid[None, :] * ax[1] + grid[:, None] * ay[1]
        source = region if level == -1 else levels[level]
        if source.shape[0] and source.shape[1]:
            out[i] = _bilinear(source, x, y)
    return out
