"""Detection modes, mirrored descriptors and the quality of small faces, on real photos with the real models."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from test_faces_analyzer import GROUP_PEOPLE, SAME_PERSON, centre, distance, encode, iou, only_face, photo

from immray.clustering import ClusteringConfig
from immray.faces import AnalyzerConfig, get_analyzer
from immray.faces.strategy import CenterFaceStrategy


def people_found(faces) -> set[str]:
    return {
        person
        for person, (left, top, right, bottom) in GROUP_PEOPLE.items()
        for face in faces
        if left <= centre(face)[0] <= right and top <= centre(face)[1] <= bottom
    }


def test_the_default_mode_is_accurate_and_finds_everyone_in_the_group_photo(analyzer, group):
    assert AnalyzerConfig().detector == "accurate" and analyzer.config.detector == "accurate"
    assert isinstance(analyzer.detector, CenterFaceStrategy) and analyzer.detector.name == "accurate"
    assert len(group.faces) == len(GROUP_PEOPLE)
    assert people_found(group.faces) == set(GROUP_PEOPLE)
    assert all(face.confidence > 0.85 for face in group.faces)


def test_hog_remains_an_alias_of_fast_and_finds_the_same_people(group, group_bytes):
    hog = get_analyzer(AnalyzerConfig(detector="hog")).analyze(group_bytes)
    assert people_found(hog.faces) == set(GROUP_PEOPLE) and len(hog.faces) == len(GROUP_PEOPLE)
    for face in hog.faces:  # the same faces, boxes placed alike (fast sees the photo at half scale)
        same = max(group.faces, key=lambda f: iou(face.boundary, f.boundary))
        assert iou(face.boundary, same.boundary) > 0.5
        assert distance(face, same) < SAME_PERSON


def test_faces_of_40_px_are_found_in_a_shrunk_photo(group_bytes):
    # At 40% the faces are 36-52 px: at the default min_face_px both modes find them, nothing else.
    small = encode(photo(group_bytes).resize((512, 354), Image.Resampling.LANCZOS), "PNG")
    for detector in ("accurate", "fast"):
        found = get_analyzer(AnalyzerConfig(detector=detector, min_face_px=40)).analyze(small).faces
        assert len(found) >= 5
        assert all(24 <= face.boundary.width <= 70 for face in found)


def test_accurate_and_cnn_modes_agree_on_a_close_up(portrait_bytes):
    # cnn is now an alias of accurate: the same detector, the same face.
    accurate = only_face(get_analyzer(AnalyzerConfig()).analyze(portrait_bytes))
    cnn = only_face(get_analyzer(AnalyzerConfig(detector="cnn")).analyze(portrait_bytes))
    assert iou(accurate.boundary, cnn.boundary) > 0.6
    assert distance(accurate, cnn) < SAME_PERSON


def test_accurate_mode_takes_nothing_but_the_astronauts_face(astronaut):
    # Nothing on the mission patch on her chest: her face only (CenterFace's box takes the forehead).
    face = only_face(astronaut)
    assert 150 <= face.boundary.left <= 190 and 40 <= face.boundary.top <= 90


def test_mirror_setting_changes_the_embedder_name_and_averages_both_views(portrait_bytes):
    analyzer = get_analyzer(AnalyzerConfig(mirror=False))
    mirrored = get_analyzer(AnalyzerConfig())  # mirrored descriptors are the default
    assert analyzer.embedder.name == "dlib-resnet-v1"
    assert mirrored.embedder.name == "dlib-resnet-v1+mirror" != analyzer.embedder.name
    assert mirrored.embedder.dimension == analyzer.embedder.dimension == 128

    plain_face = only_face(analyzer.analyze(portrait_bytes))
    mirror_face = only_face(mirrored.analyze(portrait_bytes))
    assert mirror_face.embedding.dtype == np.float32 and mirror_face.embedding.shape == (128,)
    assert 0.01 < distance(plain_face, mirror_face) < 0.3  # the average moved, but not far

    # The average of a face and its mirror image barely depends on which way the photo was flipped;
    # the plain descriptor of the flipped photo moves several times as far.
    flipped = encode(photo(portrait_bytes).transpose(Image.Transpose.FLIP_LEFT_RIGHT), "PNG")
    plain_flipped = only_face(analyzer.analyze(flipped))
    mirror_flipped = only_face(mirrored.analyze(flipped))
    assert distance(mirror_face, mirror_flipped) < distance(plain_face, plain_flipped) / 2


def test_tiny_faces_are_found_but_never_good_enough_to_found_a_person(group_bytes):
    # At 27% the six faces are ~25-35 px: found (min_face_px 20), but below the quality bar that lets a
    # face found a new cluster (the engine's min_good_quality), whatever their sharpness and pose.
    tiny = encode(photo(group_bytes).resize((346, 239), Image.Resampling.LANCZOS), "PNG")
    result = get_analyzer(AnalyzerConfig(detector="hog", min_face_px=20, max_upsample=2)).analyze(tiny)
    assert len(result.faces) >= 4
    bar = ClusteringConfig().min_good_quality
    for face in result.faces:
        assert min(face.boundary.width, face.boundary.height) < 40
        assert face.quality < bar


@pytest.mark.parametrize("detector", ["accurate", "fast", "hog", "cnn"])
def test_every_mode_finds_nothing_in_a_photo_without_faces(detector):
    rng = np.random.default_rng(0)
    noise = Image.fromarray(rng.integers(0, 256, (240, 320, 3), dtype=np.uint8))
    buffer = io.BytesIO()
    noise.save(buffer, format="PNG")
    assert get_analyzer(AnalyzerConfig(detector=detector)).analyze(buffer.getvalue()).faces == []
