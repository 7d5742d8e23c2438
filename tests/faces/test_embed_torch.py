"""The torch embedders: dlib's ResNet on torch against dlib's own descriptors, batching, and OpenCLIP.

dlib (the ``dlib-bin`` wheel) is the reference here only: it cuts the chips (its HOG detector, its 5-point
shape predictor and ``get_face_chips``, from the sample photos and flipped, rescaled and rotated copies of
them) and computes the descriptors the torch port must reproduce.
"""

from __future__ import annotations

import json

import dlib  # test-only: the reference the torch port is checked against
import numpy as np
import open_clip
import pytest
import torch
from PIL import Image

from immray.faces.dlib_resnet import model_path
from immray.faces.embed import (
    DlibResNetEmbedder,
    Embedder,
    MirroredEmbedder,
    check_embedder_spec,
    make_embedder,
)
from immray.faces.open_clip_embedder import OpenClipEmbedder, parse_spec

SAME_PERSON = 0.6


def _variants(image: Image.Image):
    """The photo and copies a detector sees differently: mirrored, smaller, larger, turned both ways."""
    yield image
    yield image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    for scale in (0.7, 0.85, 1.4):
        yield image.resize(
            (round(image.width * scale), round(image.height * scale)), Image.Resampling.BICUBIC
        )
    for angle in (-12, 6, 9):
        yield image.rotate(angle, resample=Image.Resampling.BICUBIC, expand=True)


@pytest.fixture(scope="module")
def dlib_chips(sample_photo) -> np.ndarray:
    """150x150 chips cut by dlib itself, as (n, 150, 150, 3) uint8."""
    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(model_path().parent / "shape_predictor_5_face_landmarks.dat"))
    chips = []
    for name in ("group", "portrait", "astronaut"):
        image = Image.open(sample_photo(name)).convert("RGB")
        if max(image.size) < 300:  # the 112-px portrait: too small for HOG until enlarged
            image = image.resize((image.width * 3, image.height * 3), Image.Resampling.BICUBIC)
        for variant in _variants(image):
            pixels = np.asarray(variant)
            shapes = dlib.full_object_detections()
            for rect in detector(pixels, 1):
                shapes.append(predictor(pixels, rect))
            if len(shapes):
                chips += [np.asarray(c) for c in dlib.get_face_chips(pixels, shapes, size=150, padding=0.25)]
    return np.stack(chips)


@pytest.fixture(scope="module")
def dlib_descriptors(dlib_chips) -> np.ndarray:
    model = dlib.face_recognition_model_v1(str(model_path()))
    return np.asarray(model.compute_face_descriptor(list(dlib_chips)), dtype=np.float32)


@pytest.fixture(scope="module")
def embedder() -> DlibResNetEmbedder:
    return DlibResNetEmbedder(device="cpu")


def _pair_distances(vectors: np.ndarray) -> np.ndarray:
    i, j = np.triu_indices(len(vectors), k=1)
    return np.linalg.norm(vectors[i] - vectors[j], axis=1)


def test_torch_port_reproduces_dlib_descriptors(embedder, dlib_chips, dlib_descriptors):
    assert len(dlib_chips) >= 50
    ours = embedder.embed(dlib_chips)
    assert ours.shape == (len(dlib_chips), 128) and ours.dtype == np.float32
    distance = np.linalg.norm(ours - dlib_descriptors, axis=1)
    print(
        f"\n{len(dlib_chips)} chips: torch vs dlib distance mean {distance.mean():.2e}, max {distance.max():.2e}"
    )
    assert distance.mean() < 1e-3
    assert distance.max() < 1e-2  # against 0.6, dlib's same-person boundary
    theirs_pairs, ours_pairs = _pair_distances(dlib_descriptors), _pair_distances(ours)
    same = theirs_pairs < SAME_PERSON
    assert same.any() and (~same).any()  # the chips hold both same-person and different-person pairs
    assert np.array_equal(same, ours_pairs < SAME_PERSON)  # no pair changes side of the boundary


def test_a_batch_gives_the_descriptors_of_single_calls(embedder, dlib_chips):
    chips = dlib_chips[:12]
    batch = embedder.embed(chips)
    singles = np.concatenate([embedder.embed(chips[i : i + 1]) for i in range(len(chips))])
    np.testing.assert_allclose(batch, singles, atol=1e-5)
    as_list = embedder.embed(list(chips))
    np.testing.assert_allclose(as_list, batch, atol=1e-5)


def test_the_embedder_keeps_its_name_and_interface(embedder):
    assert isinstance(embedder, Embedder)
    assert (embedder.name, embedder.dimension, embedder.chip_size, embedder.chip_padding) == (
        "dlib-resnet-v1",
        128,
        150,
        0.25,
    )
    assert embedder.embed([]).shape == (0, 128)
    assert embedder.embed(np.empty((0, 150, 150, 3), np.uint8)).shape == (0, 128)
    assert DlibResNetEmbedder()._module is embedder._module  # loaded once per process and device


@pytest.mark.parametrize(
    "chips, message",
    [
        (np.zeros((2, 100, 100, 3), np.uint8), "150x150"),
        (np.zeros((2, 150, 150), np.uint8), "RGB"),
        (np.zeros((1, 150, 150, 3), np.float32), "uint8"),
        ([np.zeros((150, 150, 3), np.uint8), np.zeros((140, 150, 3), np.uint8)], "different shapes"),
    ],
)
def test_bad_chips_are_refused_clearly(embedder, chips, message):
    with pytest.raises(ValueError, match=message):
        embedder.embed(chips)


def test_mirrored_embedder_averages_chip_and_mirror_in_one_batch(embedder, dlib_chips):
    mirrored = MirroredEmbedder(embedder)
    assert mirrored.name == "dlib-resnet-v1+mirror" and mirrored.dimension == 128
    chips = dlib_chips[:6]
    expected = (embedder.embed(chips) + embedder.embed(np.ascontiguousarray(chips[:, :, ::-1]))) / 2
    np.testing.assert_allclose(mirrored.embed(chips), expected, atol=1e-5)
    singles = np.concatenate([mirrored.embed(chips[i : i + 1]) for i in range(len(chips))])
    np.testing.assert_allclose(mirrored.embed(list(chips)), singles, atol=1e-5)
    assert mirrored.embed([]).shape == (0, 128)


# --- OpenCLIP: a tiny model this test makes and saves itself (random weights, nothing downloaded) ---

TINY = "immray-tiny-test"
TINY_CONFIG = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
    "text_cfg": {"context_length": 8, "vocab_size": 32, "width": 16, "heads": 1, "layers": 1},
}


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    root = tmp_path_factory.mktemp("open_clip")
    config = root / f"{TINY}.json"
    config.write_text(json.dumps(TINY_CONFIG))
    open_clip.add_model_config(config)
    torch.manual_seed(0)
    model = open_clip.create_model(TINY, pretrained_text=False)
    checkpoint = root / "tiny.pt"
    torch.save(model.state_dict(), checkpoint)
    return checkpoint


def test_open_clip_embedder_gives_unit_vectors_batched_like_singles(tiny_checkpoint, dlib_chips):
    clip = make_embedder(f"open_clip:{TINY}@{tiny_checkpoint}")
    assert isinstance(clip, OpenClipEmbedder) and isinstance(clip, Embedder)
    assert clip.name.startswith(f"open_clip:{TINY}:") and clip.dimension == 16 and clip.chip_size == 32
    chips = dlib_chips[:5]  # 150-px chips: resized to the model's 32 px
    vectors = clip.embed(chips)
    assert vectors.shape == (5, 16) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    singles = np.concatenate([clip.embed(chips[i : i + 1]) for i in range(len(chips))])
    np.testing.assert_allclose(vectors, singles, atol=1e-5)
    assert _pair_distances(vectors).min() > 1e-4  # different faces, different vectors
    assert clip.embed([]).shape == (0, 16)
    mirrored = MirroredEmbedder(clip)
    assert mirrored.name == f"{clip.name}+mirror" and mirrored.embed(chips).shape == (5, 16)


def test_another_checkpoint_is_another_embedder_name(tiny_checkpoint, tmp_path):
    torch.manual_seed(1)
    other = tmp_path / "other.pt"
    torch.save(open_clip.create_model(TINY, pretrained_text=False).state_dict(), other)
    assert OpenClipEmbedder(TINY, other).name != OpenClipEmbedder(TINY, tiny_checkpoint).name


@pytest.mark.parametrize(
    "spec, message",
    [
        ("open_clip:ViT-B-32", "no checkpoint"),
        ("open_clip:@/models/face.pt", "no model name"),
        ("open_clip:ViT-B-32@", "no checkpoint path"),
        ("open_clip:hf-hub:org/model@/models/face.pt", "nothing is downloaded"),
        ("clip:ViT-B-32@/models/face.pt", "open_clip:<model>@<checkpoint path>"),
    ],
)
def test_open_clip_spec_errors_are_clear(spec, message):
    with pytest.raises(ValueError, match=message):
        check_embedder_spec(spec)


def test_open_clip_spec_parses_model_and_path():
    parsed = parse_spec("open_clip:ViT-B-32@/models/face model.pt")
    assert parsed.model == "ViT-B-32" and str(parsed.checkpoint) == "/models/face model.pt"
    check_embedder_spec("dlib-resnet-v1")


def test_open_clip_load_errors_are_clear(tiny_checkpoint, tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        make_embedder(f"open_clip:{TINY}@{tmp_path / 'missing.pt'}")
    with pytest.raises(ValueError, match="not an OpenCLIP model config"):
        make_embedder(f"open_clip:no-such-model@{tiny_checkpoint}")
    wrong = tmp_path / "wrong.pt"
    torch.save({"visual.proj": torch.zeros(3)}, wrong)
    with pytest.raises(ValueError, match="does not fit model"):
        make_embedder(f"open_clip:{TINY}@{wrong}")


# --- CUDA: same descriptors as the CPU within fp16's tolerance ---


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device in this process")
def test_cuda_descriptors_match_the_cpu(embedder, dlib_chips):
    gpu = DlibResNetEmbedder(device="cuda")
    cpu_vectors, gpu_vectors = embedder.embed(dlib_chips), gpu.embed(dlib_chips)
    distance = np.linalg.norm(cpu_vectors - gpu_vectors, axis=1)
    print(f"\ncuda fp16 vs cpu fp32: distance mean {distance.mean():.2e}, max {distance.max():.2e}")
    assert distance.max() < 0.02
    same = _pair_distances(cpu_vectors) < SAME_PERSON
    near = np.abs(_pair_distances(cpu_vectors) - SAME_PERSON) < 0.02  # pairs fp16 may tip either way
    assert np.array_equal(same[~near], (_pair_distances(gpu_vectors) < SAME_PERSON)[~near])
    batch = gpu.embed(dlib_chips[:8])
    singles = np.concatenate([gpu.embed(dlib_chips[i : i + 1]) for i in range(8)])
    np.testing.assert_allclose(batch, singles, atol=5e-3)
