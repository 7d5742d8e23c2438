"""The torch face detector (CenterFace) on the sample photos, with the shipped converted weights."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from immray.faces.config import AnalyzerConfig
from immray.faces.strategy import make_strategy
from immray.samples import sample_path

# Where a person sees the six faces of the group photo (left, top, right, bottom; generous).
GROUP_PEOPLE = {
    "woman with cards, left": (60, 270, 185, 400),
    "woman standing behind": (265, 165, 375, 275),
    "man in grey shirt": (440, 280, 590, 430),
}


def image(name: str) -> Image.Image:
    return Image.open(sample_path(name)).convert("RGB")


@pytest.fixture(scope="module", params=["accurate", "fast"])
def strategy(request):
    return make_strategy(AnalyzerConfig(detector=request.param))


def centre(d) -> tuple[float, float]:
    return (d.left + d.right) / 2, (d.top + d.bottom) / 2


def test_the_six_faces_of_the_group_photo_are_found(strategy):
    group = image("group")
    found = strategy.detect(group)
    assert len(found) == 6
    for left, top, right, bottom in GROUP_PEOPLE.values():
        assert any(left <= centre(d)[0] <= right and top <= centre(d)[1] <= bottom for d in found)
    assert all(0.35 <= d.confidence <= 1 and d.score == d.confidence for d in found)


@pytest.mark.parametrize("name", ["group", "portrait", "astronaut"])
def test_boxes_lie_in_the_photo_and_landmarks_in_their_box(strategy, name):
    photo = image(name)
    found = strategy.detect(photo)
    assert len(found) == {"group": 6, "portrait": 1, "astronaut": 1}[name]
    for d in found:
        assert 0 <= d.left < d.right <= photo.width and 0 <= d.top < d.bottom <= photo.height
        assert d.landmarks is not None and len(d.landmarks) == 5
        for x, y in d.landmarks:
            assert d.left <= x <= d.right and d.top <= y <= d.bottom
        (lx, ly), (rx, ry), (nx, ny) = d.landmarks[:3]
        assert lx < nx < rx and max(ly, ry) < ny  # eyes left/right of the nose, above it


def test_no_faces_on_a_blank_or_textured_image(strategy):
    rng = np.random.default_rng(0)
    noise = Image.fromarray(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8))
    stripes = Image.fromarray(np.tile((np.arange(640) // 8 % 2 * 255).astype(np.uint8), (480, 1)), "L")
    for photo in (
        Image.new("RGB", (640, 480), "white"),
        Image.new("RGB", (640, 480)),
        noise,
        stripes.convert("RGB"),
    ):
        assert strategy.detect(photo) == []


def test_a_batch_gives_the_detections_of_single_calls(strategy):
    photos = [image("group"), image("portrait"), image("astronaut"), image("group").rotate(90, expand=True)]
    batched = strategy.detect_batch(photos)
    assert len(batched) == len(photos)
    for photo, found in zip(photos, batched, strict=True):
        single = strategy.detect(photo)
        assert len(found) == len(single)
        for a, b in zip(found, single, strict=True):
            assert np.allclose(
                (a.left, a.top, a.right, a.bottom, a.score),
                (b.left, b.top, b.right, b.bottom, b.score),
                atol=1e-3,
            )


@pytest.mark.parametrize(
    "size", [(1, 1), (2, 2), (6, 6), (8, 100), (100, 8), (5000, 3), (3, 5000), (4000, 20)]
)
def test_degenerate_sizes_give_no_faces(strategy, size):
    assert strategy.detect(Image.new("RGB", size, "gray")) == []
    assert strategy.detect_batch([Image.new("RGB", size), image("portrait")])[0] == []


def test_the_weights_load_with_torch_alone():
    # A fresh interpreter in which onnx and onnx2torch cannot be imported: the module needs torch only.
    code = (
        "import sys; sys.modules['onnx'] = None; sys.modules['onnx2torch'] = None\n"
        "import torch; from immray.faces.centerface import load_centerface\n"
        "net = load_centerface(); maps = net(torch.zeros(1, 3, 64, 96))\n"
        "assert [tuple(m.shape) for m in maps] == [(1, 1, 16, 24), (1, 2, 16, 24), (1, 2, 16, 24), (1, 10, 16, 24)]\n"
        "print('ok', sorted(m for m in sys.modules if m.split('.')[0] in ('onnx', 'onnx2torch', 'dlib')))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "ok ['onnx', 'onnx2torch']"  # the blocked entries only, nothing loaded


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU")
def test_cuda_finds_the_same_faces_as_the_cpu():
    config = AnalyzerConfig()
    photos = [image("group"), image("portrait"), image("astronaut")]
    cpu = make_strategy(config).detect_batch(photos)
    gpu = make_strategy(config, device="cuda").detect_batch(photos)
    for a_faces, b_faces in zip(cpu, gpu, strict=True):
        assert len(a_faces) == len(b_faces)
        for a, b in zip(a_faces, b_faces, strict=True):
            assert np.allclose(
                (a.left, a.top, a.right, a.bottom), (b.left, b.top, b.right, b.bottom), atol=2.0
            )
            assert abs(a.score - b.score) < 0.02
