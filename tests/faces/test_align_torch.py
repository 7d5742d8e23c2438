"""The dlib-free aligner against dlib itself (dlib-bin, a test-only reference): the same landmarks for the
same boxes, the same chips for the same landmarks, and no crash on degenerate faces or images."""

from __future__ import annotations

from dataclasses import dataclass

import dlib
import numpy as np
import pytest
from PIL import Image

from immray.faces.align import LANDMARK_ORDER, FaceAligner
from immray.faces.chips import extract_chips, pyramid_down
from immray.faces.shape_predictor import ShapePredictor, ShapePredictorFormatError, model_path
from immray.faces.shape_predictor import five_point_predictor as predictor


@dataclass(frozen=True)
class Box:
    """A detection as the aligner reads it (the seam's Detection fields it uses)."""

    left: float
    top: float
    right: float
    bottom: float
    landmarks: tuple[tuple[float, float], ...] | None = None


@pytest.fixture(scope="module")
def reference() -> dlib.shape_predictor:
    return dlib.shape_predictor(str(model_path()))


@pytest.fixture(scope="module")
def photos(sample_photo) -> dict[str, np.ndarray]:
    return {
        name: np.asarray(Image.open(sample_photo(name)).convert("RGB"))
        for name in ("group", "portrait", "astronaut")
    }


@pytest.fixture(scope="module")
def hog_boxes(photos) -> dict[str, list[dlib.rectangle]]:
    detector = dlib.get_frontal_face_detector()
    return {name: list(detector(pixels, 0)) for name, pixels in photos.items()}


def _jittered(rects: list[dlib.rectangle], per_face: int, seed: int = 0) -> np.ndarray:
    """dlib boxes (inclusive ends) and shifted/resized copies: the predictor must agree for any box."""
    rng = np.random.default_rng(seed)
    out = []
    for r in rects:
        box = np.array([r.left(), r.top(), r.right(), r.bottom()])
        out.append(box)
        out += [box + rng.integers(-12, 13, 4) for _ in range(per_face)]
    return np.array(out)


def _dlib_points(reference, pixels, box) -> np.ndarray:
    shape = reference(pixels, dlib.rectangle(*(int(v) for v in box)))
    return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)


def test_six_sample_faces_are_found_by_the_reference(hog_boxes):
    assert sum(len(r) for r in hog_boxes.values()) == 8  # six in the group, one each in the others


def test_landmarks_equal_dlibs_for_the_same_boxes(photos, hog_boxes, reference):
    compared = 0
    for name, pixels in photos.items():
        boxes = _jittered(hog_boxes[name], per_face=8)
        mine = predictor().predict(pixels, boxes)
        theirs = np.array([_dlib_points(reference, pixels, box) for box in boxes])
        error = np.abs(mine - theirs).max()
        print(f"{name}: {len(boxes)} boxes, largest landmark difference {error} px")
        assert error <= 1.0  # dlib rounds to whole pixels; float32 summing order may flip a rounding
        assert (mine == theirs).all(axis=(1, 2)).mean() >= 0.95
        compared += len(boxes)
    assert compared >= 50


@pytest.mark.parametrize(("size", "padding"), [(150, 0.25), (40, 0.25), (20, 0.1), (224, 0.5)])
def test_chips_equal_dlibs_for_the_same_landmarks(photos, hog_boxes, reference, size, padding):
    for name, pixels in photos.items():
        shapes = dlib.full_object_detections()
        for rect in hog_boxes[name]:
            shapes.append(reference(pixels, rect))
        theirs = np.array(dlib.get_face_chips(pixels, shapes, size=size, padding=padding))
        points = np.array([[(p.x, p.y) for p in s.parts()] for s in shapes], dtype=np.float64)
        mine = extract_chips(pixels, points, size, padding)
        diff = np.abs(mine.astype(int) - theirs.astype(int))
        print(f"{name} {size}px pad {padding}: max {diff.max()}, mean {diff.mean():.4f} grey levels")
        assert mine.shape == theirs.shape
        assert diff.max() <= 1 and diff.mean() < 0.01


def test_chips_follow_rotated_faces_like_dlib(photos, reference):
    """A face rolled by 25 degrees: the chip is cut along the rotated rectangle, as dlib does."""
    pixels = np.asarray(Image.fromarray(photos["astronaut"]).rotate(25, resample=Image.BILINEAR))
    rect = dlib.get_frontal_face_detector()(pixels, 1)
    rects = list(rect) or [dlib.rectangle(150, 40, 300, 190)]
    shapes = dlib.full_object_detections()
    for r in rects:
        shapes.append(reference(pixels, r))
    theirs = np.array(dlib.get_face_chips(pixels, shapes, size=150, padding=0.25))
    points = np.array([[(p.x, p.y) for p in s.parts()] for s in shapes], dtype=np.float64)
    assert np.abs(extract_chips(pixels, points).astype(int) - theirs.astype(int)).max() <= 1


def test_pyramid_level_has_dlibs_size():
    image = np.arange(37 * 20 * 3, dtype=np.uint8).reshape(37, 20, 3)
    assert pyramid_down(image).shape == (17, 8, 3)
    assert pyramid_down(image[:8]).shape[:2] == (0, 0)
    flat = np.full((30, 30, 3), 200, dtype=np.uint8)
    assert (pyramid_down(flat) == 200).all()  # the filter's weights sum to 256


def test_align_returns_dlib_order_landmarks_and_chips(photos, hog_boxes):
    pixels = photos["astronaut"]
    (rect,) = hog_boxes["astronaut"]
    face = Box(rect.left(), rect.top(), rect.right() + 1, rect.bottom() + 1)
    landmarks, chips = FaceAligner().align(pixels, [face])
    assert chips.shape == (1, 150, 150, 3) and chips.dtype == np.uint8
    (points,) = landmarks
    assert len(points) == len(LANDMARK_ORDER) == 5
    (right_outer, right_inner, left_outer, left_inner, nose) = np.array(points)
    assert right_outer[0] > right_inner[0] > left_inner[0] > left_outer[0]  # image-right eye first
    assert nose[1] > max(right_inner[1], left_inner[1])
    assert left_inner[0] < nose[0] < right_inner[0]


def test_align_uses_the_detectors_points_when_given(photos, hog_boxes, reference):
    """With CenterFace-style points (eyes, nose tip, mouth corners), the box is mapped towards dlib's and
    the landmarks stay near dlib's own: within a tenth of the eye distance."""
    pixels = photos["astronaut"]
    (rect,) = hog_boxes["astronaut"]
    theirs = _dlib_points(reference, pixels, (rect.left(), rect.top(), rect.right(), rect.bottom()))
    eyes = theirs[0:2].mean(0), theirs[2:4].mean(0)
    eye_distance = float(np.linalg.norm(eyes[0] - eyes[1]))
    nose = theirs[4]
    mouth = nose + np.array([0.0, 0.5 * eye_distance])
    centerface_points = (
        tuple(eyes[1]),
        tuple(eyes[0]),
        tuple(nose - [0, 0.2 * eye_distance]),
        tuple(mouth - [0.4 * eye_distance, 0]),
        tuple(mouth + [0.4 * eye_distance, 0]),
    )
    centre = (eyes[0] + eyes[1]) / 2 + [0, 0.5 * eye_distance]
    half = 1.1 * eye_distance
    face = Box(
        centre[0] - half, centre[1] - 1.2 * half, centre[0] + half, centre[1] + half, centerface_points
    )
    (points,), _ = FaceAligner().align(pixels, [face])
    error = np.linalg.norm(np.array(points) - theirs, axis=1).mean() / eye_distance
    print(f"landmark error from a CenterFace-style detection: {error:.3f} eye distances")
    assert error < 0.1


def test_no_faces_gives_empty_results(photos):
    landmarks, chips = FaceAligner().align(photos["portrait"], [])
    assert landmarks == [] and chips.shape == (0, 150, 150, 3)


@pytest.mark.parametrize(
    "box",
    [
        Box(-40, -30, 60, 70),  # over the top-left corner
        Box(400, 420, 560, 580),  # over the bottom-right corner
        Box(100, 100, 103, 103),  # a tiny face
        Box(100, 100, 100, 100),  # an empty box
        Box(2000, 2000, 2100, 2100),  # wholly outside the image
        Box(10, 10, 60, 60, ((20, 30), (40, 30), (30, 40), (22, 50), (38, 50))),
        Box(10, 10, 60, 60, ((np.nan, 0),) * 5),  # unusable points fall back to the box
    ],
)
def test_degenerate_faces_never_crash(photos, box):
    landmarks, chips = FaceAligner().align(photos["astronaut"], [box], size=150)
    assert len(landmarks) == 1 and len(landmarks[0]) == 5
    assert chips.shape == (1, 150, 150, 3)


@pytest.mark.parametrize("shape", [(1, 1, 3), (8, 100, 3), (100, 8, 3), (5, 5), (40, 40, 4)])
def test_tiny_and_odd_images_never_crash(shape):
    pixels = np.full(shape, 128, dtype=np.uint8)
    landmarks, chips = FaceAligner().align(pixels, [Box(0, 0, shape[1], shape[0])], size=40)
    assert len(landmarks) == 1 and chips.shape == (1, 40, 40, 3)


def test_bad_pixels_are_refused_clearly():
    with pytest.raises(ValueError, match="uint8"):
        FaceAligner().align(np.zeros((10, 10, 3), dtype=np.float32), [])
    with pytest.raises(ValueError, match="shape"):
        FaceAligner().align(np.zeros((10, 10, 2), dtype=np.uint8), [])


def test_a_file_that_is_not_a_predictor_is_refused(tmp_path):
    path = tmp_path / "not_a_model.dat"
    path.write_bytes(b"\x01\x01" + b"\xff" * 10)
    with pytest.raises(ShapePredictorFormatError):
        ShapePredictor(path)


def test_chips_from_the_detector_give_dlibs_descriptors(photos, hog_boxes, reference):
    """End to end on the sample faces: CenterFace detections (the runtime detector) -> this aligner, against
    dlib's own pipeline (HOG box -> dlib's predictor -> get_face_chips), both through dlib's ResNet: the
    descriptors must stay far inside dlib's same-person boundary (0.6)."""
    from immray.faces.config import AnalyzerConfig
    from immray.faces.dlib_resnet import model_path as resnet_path
    from immray.faces.strategy import make_strategy

    network = dlib.face_recognition_model_v1(str(resnet_path()))
    strategy = make_strategy(AnalyzerConfig())
    aligner = FaceAligner()
    distances = []
    for name, pixels in photos.items():
        shapes = dlib.full_object_detections()
        for rect in hog_boxes[name]:
            shapes.append(reference(pixels, rect))
        theirs = np.array(
            network.compute_face_descriptor(list(dlib.get_face_chips(pixels, shapes, 150, 0.25)))
        )
        (detections,) = strategy.detect_batch([Image.fromarray(pixels)])
        _, chips = aligner.align(pixels, detections)
        mine = np.array(network.compute_face_descriptor(list(chips)))
        nearest = np.linalg.norm(theirs[:, None] - mine[None], axis=2).min(axis=1)
        distances += nearest.tolist()
    distances = np.array(distances)
    print(f"{len(distances)} faces: descriptor distance to dlib's pipeline mean {distances.mean():.3f}, "
          f"max {distances.max():.3f}")  # fmt: skip
    assert len(distances) == 8
    assert distances.mean() < 0.07 and distances.max() < 0.15
