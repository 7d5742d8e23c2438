"""Aligned face chips -> identity vectors, behind a small interface so another model can replace dlib's.

Two implementations, both torch modules loaded once per process and device, each taking a whole batch of
chips in one forward pass (``torch.inference_mode()``; fp16 autocast on CUDA only, fp32 on the CPU):
- ``DlibResNetEmbedder``: dlib's ResNet ported to torch (``dlib_resnet``), the default: its descriptors are
  dlib's to ~1e-6 (tests/faces/test_embed_torch.py), so stored vectors and the 0.6 boundary keep meaning;
- ``OpenClipEmbedder`` (``open_clip_embedder``): an operator's own OpenCLIP image tower, ``open_clip:<model>@<path>``.
``make_embedder(spec, device)`` builds either from the setting's string.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from functools import lru_cache
from typing import Protocol, runtime_checkable

import numpy as np
import torch

DLIB_RESNET = "dlib-resnet-v1"
OPEN_CLIP_PREFIX = "open_clip:"

Chips = np.ndarray | Sequence[np.ndarray]


@runtime_checkable
class Embedder(Protocol):
    """What the analyzer needs from a face recogniser.

    ``embed`` takes aligned RGB uint8 chips, an (n, size, size, 3) array or a list of (size, size, 3) arrays,
    and returns an (n, dimension) float32 array, comparable by Euclidean distance. An implementation may also
    define ``chip_size`` (pixels) and ``chip_padding`` (the border around dlib's 5-point template, as a
    fraction of it) to get chips cut its way; the defaults are dlib's 150 and 0.25.
    """

    name: str
    dimension: int

    def embed(self, chips: Chips) -> np.ndarray: ...


def chip_batch(chips: Chips, size: int | None = None) -> np.ndarray:
    """The chips as one (n, h, w, 3) uint8 array; ValueError naming what is wrong with them."""
    if isinstance(chips, np.ndarray):
        batch = chips
    else:
        items = list(chips)
        if not items:
            return np.empty((0, size or 0, size or 0, 3), dtype=np.uint8)
        shapes = {np.shape(item) for item in items}
        if len(shapes) != 1:
            raise ValueError(f"chips of different shapes in one batch: {sorted(shapes)}")
        batch = np.stack([np.asarray(item) for item in items])
    if batch.ndim != 4 or batch.shape[3] != 3:
        raise ValueError(f"chips must be (n, height, width, 3) RGB, not an array of shape {batch.shape}")
    if size is not None and batch.shape[0] and batch.shape[1:3] != (size, size):
        raise ValueError(f"chips must be {size}x{size}, not {batch.shape[1]}x{batch.shape[2]}")
    if batch.dtype != np.uint8:
        raise ValueError(f"chips must be uint8 pixels, not {batch.dtype}")
    return np.ascontiguousarray(batch)


def run_batch(
    module: torch.nn.Module, pixels: np.ndarray, device: torch.device, max_batch: int
) -> np.ndarray:
    """``module`` over (n, h, w, 3) uint8 pixels, as (n, 3, h, w) float 0-255 on ``device``: one forward
    when n <= max_batch (a bound on the activations' memory, ~0.7 MB a chip for dlib's ResNet), fp16 autocast
    on CUDA; float32 numpy out."""
    outputs = []
    with torch.inference_mode():
        for start in range(0, len(pixels), max_batch):
            part = pixels[start : start + max_batch]
            if not part.flags.writeable:  # torch warns on read-only numpy memory (decoded images often are)
                part = part.copy()
            part = torch.from_numpy(part).to(device, non_blocking=True)
            x = part.permute(0, 3, 1, 2).float().contiguous(memory_format=torch.channels_last)
            if device.type == "cuda":
                with torch.autocast("cuda", dtype=torch.float16):
                    y = module(x)
            else:
                y = module(x)
            outputs.append(y.float().cpu().numpy())
    return np.concatenate(outputs).astype(np.float32, copy=False)


class DlibResNetEmbedder:
    """dlib's ResNet face recogniser (``dlib_face_recognition_resnet_model_v1``) on torch: 128-d descriptors,
    two faces of one person usually closer than 0.6. ``embed`` takes a whole batch of 150x150 chips (cut the
    way ``dlib.get_face_chips`` cuts them, padding 0.25) in one forward pass (batches over ``max_batch``
    chips run in parts of that size, to bound the activations' memory)."""

    name = DLIB_RESNET
    dimension = 128
    chip_size = 150
    chip_padding = 0.25
    same_person_distance = 0.6

    def __init__(self, device: str | torch.device = "cpu", max_batch: int = 256) -> None:
        self.device = torch.device(device)
        self.max_batch = max(1, int(max_batch))
        self._module = _dlib_module(str(self.device))

    def embed(self, chips: Chips) -> np.ndarray:
        pixels = chip_batch(chips, self.chip_size)
        if not len(pixels):
            return np.empty((0, self.dimension), dtype=np.float32)
        return run_batch(self._module, pixels, self.device, self.max_batch)


_load_lock = threading.Lock()


@lru_cache(maxsize=4)
def _dlib_module(device: str) -> torch.nn.Module:
    """The network on ``device``, built once per process and device from the installed .dat."""
    from immray.faces.dlib_resnet import DlibFaceResNet, load_network

    with _load_lock:
        module = DlibFaceResNet(load_network()).eval().requires_grad_(False)
        return module.to(device=torch.device(device), memory_format=torch.channels_last)


class MirroredEmbedder:
    """Another embedder's descriptor of a chip averaged with its descriptor of the mirrored chip.

    A face and its mirror image are the same person, so the average keeps what both views agree on and
    cancels part of what depends on which way the head is turned or the light falls. It costs a second
    descriptor per face, computed in the same batch (chips and their mirrors: one forward pass). The name
    changes with it: these vectors must never be compared with, or stored beside, the plain ones. The average
    is not rescaled: it is ~2% shorter than dlib's descriptors, which the clustering engine (cosines) does not
    see; rescaling it to their norm changed Euclidean baselines by a few tenths of a point at most.
    """

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self.name = f"{inner.name}+mirror"
        self.dimension = inner.dimension
        self.chip_size = getattr(inner, "chip_size", 150)
        self.chip_padding = getattr(inner, "chip_padding", 0.25)
        distance = getattr(inner, "same_person_distance", None)
        if distance:
            self.same_person_distance = distance

    def embed(self, chips: Chips) -> np.ndarray:
        pixels = chip_batch(chips)
        if not len(pixels):
            return self.inner.embed(pixels)
        both = self.inner.embed(np.concatenate([pixels, pixels[:, :, ::-1]]))  # one batch, one forward
        count = len(pixels)
        return ((both[:count] + both[count:]) / 2).astype(np.float32)


def check_embedder_spec(spec: str) -> None:
    """ValueError (with the reason) unless ``spec`` names an embedder: ``dlib-resnet-v1`` or
    ``open_clip:<model>@<checkpoint path>``. Cheap: nothing is loaded or imported."""
    if spec == DLIB_RESNET:
        return
    if spec.startswith(OPEN_CLIP_PREFIX):
        from immray.faces.open_clip_embedder import parse_spec

        parse_spec(spec)
        return
    raise ValueError(
        f"embedder must be {DLIB_RESNET} or {OPEN_CLIP_PREFIX}<model>@<checkpoint path>, not {spec!r}"
    )


def make_embedder(spec: str = DLIB_RESNET, device: str | torch.device = "cpu") -> Embedder:
    """The embedder a setting names, its model loaded on ``device`` (once per process)."""
    check_embedder_spec(spec)
    if spec == DLIB_RESNET:
        return DlibResNetEmbedder(device=device)
    from immray.faces.open_clip_embedder import OpenClipEmbedder

    return OpenClipEmbedder.from_spec(spec, device=device)
