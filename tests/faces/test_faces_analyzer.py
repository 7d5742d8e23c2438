"""The whole pipeline on real photos with the real models (torch): counts, boxes, descriptors, pose, quality."""

from __future__ import annotations

import io
import itertools
import json

import numpy as np
import pillow_heif
import pytest
from PIL import Image, ImageFilter

from immray.faces import (
    AnalyzedImage,
    Analyzer,
    AnalyzerConfig,
    Boundary,
    DlibResNetEmbedder,
    Embedder,
    Face,
    ImageError,
    get_analyzer,
)

# Where each of the six people's face is in the group photo (t1.jpg, 1280x886), labelled by looking at it:
# generous boxes (left, top, right, bottom) that a detected face's centre must fall in.
GROUP_PEOPLE = {
    "woman with cards, left": (60, 270, 185, 400),
    "woman standing behind": (265, 165, 375, 275),
    "man in grey shirt": (440, 280, 590, 430),
    "man in red shirt": (715, 350, 850, 485),
    "man standing, right": (860, 55, 1015, 205),
    "woman with cards, right": (1105, 270, 1240, 400),
}
SAME_PERSON = 0.4
DIFFERENT_PEOPLE = 0.6


def encode(image: Image.Image, fmt: str, **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def photo(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data)).convert("RGB")


def distance(a: Face, b: Face) -> float:
    return float(np.linalg.norm(a.embedding - b.embedding))


def iou(a: Boundary, b: Boundary) -> float:
    width = min(a.left + a.width, b.left + b.width) - max(a.left, b.left)
    height = min(a.top + a.height, b.top + b.height) - max(a.top, b.top)
    inter = max(0, width) * max(0, height)
    return inter / (a.width * a.height + b.width * b.height - inter)


def centre(face: Face) -> tuple[float, float]:
    box = face.boundary
    return box.left + box.width / 2, box.top + box.height / 2


def only_face(result: AnalyzedImage) -> Face:
    assert len(result.faces) == 1, [f.boundary for f in result.faces]
    return result.faces[0]


def matching(face: Face, candidates: list[Face]) -> Face:
    best = max(candidates, key=lambda other: iou(face.boundary, other.boundary))
    assert iou(face.boundary, best.boundary) > 0.5, (face.boundary, best.boundary)
    return best


def test_group_photo_has_one_face_per_person(group):
    assert (group.width, group.height, group.content_type) == (1280, 886, "image/jpeg")
    assert len(group.faces) == len(GROUP_PEOPLE)
    for person, (left, top, right, bottom) in GROUP_PEOPLE.items():
        inside = [f for f in group.faces if left <= centre(f)[0] <= right and top <= centre(f)[1] <= bottom]
        assert len(inside) == 1, person
    for face in group.faces:
        box = face.boundary
        assert 60 <= box.width <= 160 and 60 <= box.height <= 160
        assert box.left >= 0 and box.top >= 0
        assert box.left + box.width <= group.width and box.top + box.height <= group.height
        for x, y in face.landmarks:  # the five points lie on the face
            assert box.left - 10 <= x <= box.left + box.width + 10
            assert box.top - 10 <= y <= box.top + box.height + 10


def test_faces_come_top_to_bottom_then_left_to_right(group):
    keys = [(f.boundary.top, f.boundary.left) for f in group.faces]
    assert keys == sorted(keys)


def test_face_values_and_imm_figure(group):
    for face in group.faces:
        assert face.embedding.shape == (128,) and face.embedding.dtype == np.float32
        assert np.isfinite(face.embedding).all()
        assert len(face.landmarks) == 5
        for value in (face.confidence, face.quality, face.sharpness):
            assert 0.0 <= value <= 1.0
        for angle in (face.head_pose.yaw, face.head_pose.pitch, face.head_pose.roll):
            assert -90.0 <= angle <= 90.0
        figure = json.loads(json.dumps(face.to_figure()))
        calibrated = {"AgeSD"} if face.attributes.age_sd is not None else set()  # adults' ages only
        assert set(figure) == calibrated | {
            "FigureType",
            "FigureConfidence",
            "Boundary",
            "FaceQuality",
            "Sharpness",
            "HeadPose",
            # estimated by face-api's networks (tests/faces/test_attributes.py)
            "Age",
            "Gender",
            "GenderConfidence",
            "Emotion",
            "EmotionConfidence",
        }
        assert figure["FigureType"] == "face"
        assert figure["Boundary"] == {
            "Left": face.boundary.left,
            "Top": face.boundary.top,
            "Width": face.boundary.width,
            "Height": face.boundary.height,
        }
        assert set(figure["HeadPose"]) == {"Pitch", "Roll", "Yaw"}


def test_different_people_are_far_apart(group):
    for a, b in itertools.combinations(group.faces, 2):
        assert distance(a, b) > DIFFERENT_PEOPLE, (a.boundary, b.boundary)


@pytest.mark.parametrize(
    "variant",
    [
        lambda im: encode(im.transpose(Image.Transpose.FLIP_LEFT_RIGHT), "PNG"),
        lambda im: encode(im.resize((im.width * 2, im.height * 2), Image.Resampling.BICUBIC), "PNG"),
        lambda im: encode(
            im.resize((im.width * 7 // 10, im.height * 7 // 10), Image.Resampling.LANCZOS), "PNG"
        ),
        lambda im: encode(im, "JPEG", quality=60),
    ],
    ids=["mirrored", "upscaled", "downscaled", "jpeg-q60"],
)
def test_same_face_in_altered_copies_stays_close(analyzer, portrait_bytes, variant):
    original = only_face(analyzer.analyze(portrait_bytes))
    altered = only_face(analyzer.analyze(variant(photo(portrait_bytes))))
    assert distance(original, altered) < SAME_PERSON


def test_mirrored_astronaut_is_the_same_person(analyzer, astronaut, astronaut_bytes):
    face = max(astronaut.faces, key=lambda f: f.confidence)  # HOG also fires weakly on her mission patch
    mirrored = analyzer.analyze(
        encode(photo(astronaut_bytes).transpose(Image.Transpose.FLIP_LEFT_RIGHT), "PNG")
    )
    box = face.boundary
    flipped = Boundary(astronaut.width - box.left - box.width, box.top, box.width, box.height)
    same = max(mirrored.faces, key=lambda f: iou(flipped, f.boundary))
    assert iou(flipped, same.boundary) > 0.5
    assert distance(face, same) < SAME_PERSON


@pytest.mark.parametrize(
    ("orientation", "stored_as"), [(6, Image.Transpose.ROTATE_90), (8, Image.Transpose.ROTATE_270)]
)
def test_exif_rotated_photo_gives_the_same_faces_in_displayed_pixels(
    analyzer, group, group_bytes, orientation, stored_as
):
    exif = Image.Exif()
    exif[0x0112] = orientation
    sideways = photo(group_bytes).transpose(stored_as)  # as a camera held sideways stores it
    assert sideways.size == (886, 1280)
    rotated = analyzer.analyze(encode(sideways, "JPEG", quality=95, exif=exif.tobytes()))
    assert (rotated.width, rotated.height) == (1280, 886)
    assert len(rotated.faces) == len(group.faces)
    for face in group.faces:
        assert distance(face, matching(face, rotated.faces)) < 0.2


def test_large_photo_is_downscaled_for_detection_with_boxes_in_original_pixels(group, group_bytes):
    # A 1280 px photo with a 640 px detection limit: detection runs at half size (upsampled once to keep
    # 80 px faces), landmarks and descriptors on the full image, boxes mapped back to it.
    halved = Analyzer(AnalyzerConfig(detect_max_side=640, min_face_px=80)).analyze(group_bytes)
    assert (halved.width, halved.height) == (1280, 886)
    assert len(halved.faces) == len(group.faces)
    for face in group.faces:
        assert distance(face, matching(face, halved.faces)) < 0.2


def test_upsampling_reaches_small_faces(group_bytes):
    # At 40% size the faces are 36-52 px: under HOG's ~80 px window, so only upsampling finds them.
    small = photo(group_bytes).resize((512, 354), Image.Resampling.LANCZOS)
    data = encode(small, "PNG")
    assert len(Analyzer(AnalyzerConfig(min_face_px=80)).analyze(data).faces) == 0
    found = get_analyzer(AnalyzerConfig(min_face_px=40)).analyze(data).faces
    assert len(found) >= 5
    assert all(30 <= f.boundary.width <= 60 for f in found)


def test_head_pose_follows_mirroring_and_rotation(analyzer, portrait_bytes):
    image = photo(portrait_bytes)
    pose = only_face(analyzer.analyze(portrait_bytes)).head_pose
    mirrored = only_face(analyzer.analyze(encode(image.transpose(Image.Transpose.FLIP_LEFT_RIGHT), "PNG")))
    assert abs(mirrored.head_pose.yaw + pose.yaw) < 6
    assert abs(mirrored.head_pose.roll + pose.roll) < 3
    assert abs(mirrored.head_pose.pitch - pose.pitch) < 6
    turned = image.rotate(20, resample=Image.Resampling.BICUBIC, expand=True, fillcolor=(128, 128, 128))
    rotated = only_face(analyzer.analyze(encode(turned, "PNG")))  # 20 degrees counter-clockwise
    assert abs((rotated.head_pose.roll - pose.roll) + 20) < 3


def test_blur_lowers_sharpness_and_quality(analyzer, astronaut, astronaut_bytes):
    face = max(astronaut.faces, key=lambda f: f.confidence)
    assert face.quality > 0.8  # a large, sharp, frontal face: "good" by IMM's measure
    blurred = analyzer.analyze(encode(photo(astronaut_bytes).filter(ImageFilter.GaussianBlur(2)), "PNG"))
    same = matching(face, blurred.faces)
    assert same.sharpness < face.sharpness / 2
    assert same.quality < 0.5


def test_small_face_has_lower_quality(analyzer, astronaut, astronaut_bytes):
    face = max(astronaut.faces, key=lambda f: f.confidence)
    small = analyzer.analyze(
        encode(photo(astronaut_bytes).resize((205, 205), Image.Resampling.LANCZOS), "PNG")
    )
    tiny = max(small.faces, key=lambda f: f.confidence)
    assert tiny.boundary.width < 45
    assert tiny.quality < face.quality - 0.3


def heic(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    pillow_heif.from_pillow(image).save(buffer, quality=90)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("make", "content_type"),
    [
        (lambda im: encode(im.convert("CMYK"), "JPEG", quality=90), "image/jpeg"),
        (
            lambda im: encode(Image.fromarray(np.asarray(im.convert("L")).astype(np.uint16) * 257), "PNG"),
            "image/png",
        ),
        (lambda im: encode(im, "GIF", save_all=True, append_images=[Image.new("RGB", im.size)]), "image/gif"),
        (heic, "image/heif"),
    ],
    ids=["cmyk-jpeg", "16-bit-png", "animated-gif", "heic"],
)
def test_other_encodings_give_the_same_face(analyzer, portrait_bytes, make, content_type):
    original = only_face(analyzer.analyze(portrait_bytes))
    result = analyzer.analyze(make(photo(portrait_bytes)))
    assert result.content_type == content_type
    assert distance(original, only_face(result)) < SAME_PERSON


def test_animated_gif_uses_its_first_frame_only(analyzer, portrait_bytes):
    blank = Image.new("RGB", (112, 112), (90, 90, 90))
    face_second = encode(blank, "GIF", save_all=True, append_images=[photo(portrait_bytes)], duration=100)
    assert Image.open(io.BytesIO(face_second)).n_frames == 2
    assert analyzer.analyze(face_second).faces == []


def test_photo_without_faces(analyzer):
    ramp = np.tile(np.linspace(0, 255, 300, dtype=np.uint8), (200, 1))
    result = analyzer.analyze(encode(Image.fromarray(ramp), "PNG"))
    assert (result.width, result.height, result.faces) == (300, 200, [])


@pytest.mark.parametrize(
    ("data", "code"),
    [(b"", "InvalidImage"), (b"hello world\n", "InvalidImage"), (b"GIF89a\x00", "InvalidImage")],
)
def test_bad_bytes_raise_image_error(analyzer, data, code):
    with pytest.raises(ImageError) as caught:
        analyzer.analyze(data)
    assert caught.value.code == code


def test_fast_mode_finds_the_same_face(analyzer, portrait_bytes):
    accurate_face = only_face(analyzer.analyze(portrait_bytes))
    fast_face = only_face(get_analyzer(AnalyzerConfig(detector="fast")).analyze(portrait_bytes))
    assert iou(accurate_face.boundary, fast_face.boundary) > 0.5
    assert distance(accurate_face, fast_face) < 0.15
    assert min(accurate_face.confidence, fast_face.confidence) > 0.6


class GreyThumbnailEmbedder:
    """A deliberately simple recogniser, to show that another model plugs in with its own chip size."""

    name = "grey-thumbnail"
    dimension = 64
    chip_size = 32
    chip_padding = 0.0

    def __init__(self) -> None:
        self.chip_shapes: list[tuple[int, ...]] = []

    def embed(self, chips: list[np.ndarray]) -> np.ndarray:
        self.chip_shapes += [chip.shape for chip in chips]
        thumbnails = [
            np.asarray(Image.fromarray(c).convert("L").resize((8, 8)), np.float32) / 255 for c in chips
        ]
        return np.stack([t.ravel() for t in thumbnails]) if thumbnails else np.empty((0, 64), np.float32)


def test_another_embedder_plugs_in(group_bytes):
    embedder = GreyThumbnailEmbedder()
    assert isinstance(embedder, Embedder) and isinstance(DlibResNetEmbedder(), Embedder)
    result = Analyzer(AnalyzerConfig(mirror=False), embedder=embedder).analyze(group_bytes)
    assert len(result.faces) == len(GROUP_PEOPLE)
    assert embedder.chip_shapes == [(32, 32, 3)] * len(GROUP_PEOPLE)
    assert all(face.embedding.shape == (64,) for face in result.faces)
    # with mirrored descriptors (the default) it is shown each chip and its mirror image, in one batch
    embedder.chip_shapes.clear()
    mirrored = Analyzer(AnalyzerConfig(), embedder=embedder)
    assert mirrored.embedder.name == f"{embedder.name}+mirror"
    assert len(mirrored.analyze(group_bytes).faces) == len(GROUP_PEOPLE)
    assert embedder.chip_shapes == [(32, 32, 3)] * (2 * len(GROUP_PEOPLE))


def test_analyzers_are_cached_per_config():
    assert get_analyzer(AnalyzerConfig()) is get_analyzer(AnalyzerConfig())
    assert get_analyzer(AnalyzerConfig(min_face_px=80)) is not get_analyzer(AnalyzerConfig())
    analyzer = get_analyzer(AnalyzerConfig())
    assert (analyzer.embedder.name, analyzer.embedder.dimension) == ("dlib-resnet-v1+mirror", 128)
    with pytest.raises(ValueError, match="detector"):
        AnalyzerConfig(detector="yolo")
    with pytest.raises(ValueError, match="min_face_px"):
        AnalyzerConfig(min_face_px=0)


def test_analyzers_of_every_config_share_the_loaded_models():
    # Datasets in different detection modes are analysed side by side in one process: each torch module is
    # loaded once per device and shared by every Analyzer (the detector's with one lock its users take turns on).
    accurate, fast, legacy = (get_analyzer(AnalyzerConfig(detector=d)) for d in ("accurate", "fast", "cnn"))
    detectors = [a.detector._detector for a in (accurate, fast, legacy)]
    assert len({(id(d._net), id(d._lock)) for d in detectors}) == 1
    embedders = [a.embedder.inner for a in (accurate, fast, legacy)]  # mirrored: wraps the model's
    assert len({id(e._module) for e in embedders}) == 1
    assert len({id(a.aligner.predictor) for a in (accurate, fast, legacy)}) == 1
    assert accurate.detector.plan != fast.detector.plan and legacy.detector.plan == accurate.detector.plan


def test_a_batch_gives_exactly_the_faces_of_single_calls(
    analyzer, group_bytes, portrait_bytes, astronaut_bytes
):
    photos = [group_bytes, portrait_bytes, b"not an image", astronaut_bytes, portrait_bytes]
    batch = analyzer.analyze_batch(photos)
    assert isinstance(batch[2], ImageError) and batch[2].code == "InvalidImage"  # fails alone
    for data, together in zip(photos, batch, strict=True):
        if data == b"not an image":
            continue
        alone = analyzer.analyze(data)
        assert [f.boundary for f in together.faces] == [f.boundary for f in alone.faces]
        for a, b in zip(together.faces, alone.faces, strict=True):
            assert np.allclose(a.embedding, b.embedding, atol=1e-4)
            assert a.landmarks == b.landmarks and a.quality == pytest.approx(b.quality, abs=1e-4)


@pytest.mark.parametrize("size", [(1, 1), (2, 3), (6, 6), (8, 100), (100, 8), (3000, 4), (31, 31)])
def test_an_image_too_small_or_too_thin_has_no_faces_and_never_crashes(analyzer, size):
    noise = np.random.default_rng(7).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    for fmt in ("JPEG", "PNG"):
        result = analyzer.analyze(encode(Image.fromarray(noise), fmt))
        assert (result.width, result.height, result.faces) == (*size, [])
