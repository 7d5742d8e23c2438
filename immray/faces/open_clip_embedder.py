"""An operator's own OpenCLIP image tower as the face embedder: ``IMMRAY_EMBEDDER=open_clip:<model>@<path>``.

No CLIP weights ship in any package here: this is the way to use one's own fine-tuned face (or image) model.
``<model>`` is an OpenCLIP model config name (``open_clip.list_models()``, or one registered with
``open_clip.add_model_config``) and ``<path>`` a local checkpoint of that model (a state_dict saved with
``torch.save``, or any file ``open_clip.create_model(model, pretrained=path)`` loads). Nothing is downloaded:
hub names and pretrained tags are refused, and only the image tower is kept.

Each chip (the aligned face, cut at the model's input size) is resized to that size if it differs, scaled to
0-1 and normalised with the model's own mean and std; the output is L2-normalised, so distances lie in 0-2.
The name carries the model and a digest of the checkpoint: faces embedded by two different checkpoints are
never compared or clustered together.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from immray.faces.embed import OPEN_CLIP_PREFIX, Chips, chip_batch, run_batch


@dataclass(frozen=True)
class OpenClipSpec:
    """A parsed ``open_clip:<model>@<path>`` setting."""

    model: str
    checkpoint: Path


def parse_spec(spec: str) -> OpenClipSpec:
    """``open_clip:<model>@<path>`` -> OpenClipSpec; ValueError saying what is missing or wrong. The path is
    taken as written (it must exist where the model is loaded, which may be another machine)."""
    if not isinstance(spec, str) or not spec.startswith(OPEN_CLIP_PREFIX):
        raise ValueError(
            f"an OpenCLIP embedder is written {OPEN_CLIP_PREFIX}<model>@<checkpoint path>, not {spec!r}"
        )
    body = spec[len(OPEN_CLIP_PREFIX) :]
    model, at, path = body.partition("@")
    model, path = model.strip(), path.strip()
    if not at:
        raise ValueError(f"{spec!r}: no checkpoint; write {OPEN_CLIP_PREFIX}<model>@<checkpoint path>")
    if not model:
        raise ValueError(f"{spec!r}: no model name before '@' (an OpenCLIP config name such as ViT-B-32)")
    if not path:
        raise ValueError(f"{spec!r}: no checkpoint path after '@'")
    if ":" in model or "/" in model:
        raise ValueError(
            f"{spec!r}: the model must be an OpenCLIP config name; hub or schema names ({model!r}) would "
            "download, and nothing is downloaded here"
        )
    return OpenClipSpec(model=model, checkpoint=Path(path).expanduser())


class _ImageTower(nn.Module):
    """uint8-range float chips (n, 3, h, w) -> unit vectors: resize, normalise, the image tower, L2."""

    def __init__(self, visual: nn.Module, size: tuple[int, int], mean: list[float], std: list[float]) -> None:
        super().__init__()
        self.visual = visual
        self.size = size
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1) * 255.0)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1) * 255.0)

    def forward(self, chips: torch.Tensor) -> torch.Tensor:
        x = chips
        if tuple(x.shape[2:]) != self.size:
            x = F.interpolate(x, size=self.size, mode="bicubic", align_corners=False, antialias=True)
        x = (x - self.mean) / self.std
        out = self.visual(x)
        if isinstance(out, tuple):  # towers that also return tokens
            out = out[0]
        return F.normalize(out.float(), dim=-1)


class OpenClipEmbedder:
    """An OpenCLIP image tower from a local checkpoint; L2-normalised output, batched like the dlib one."""

    chip_padding = 0.25

    def __init__(
        self, model: str, checkpoint: str | Path, device: str | torch.device = "cpu", max_batch: int = 256
    ):
        spec = OpenClipSpec(model=model, checkpoint=Path(checkpoint).expanduser())
        self.device = torch.device(device)
        self.max_batch = max(1, int(max_batch))
        self._module, self.dimension, digest = _tower(
            spec.model, str(spec.checkpoint.resolve()), str(self.device)
        )
        self.chip_size = int(self._module.size[0])
        self.name = f"{OPEN_CLIP_PREFIX}{spec.model}:{digest}"

    @classmethod
    def from_spec(cls, spec: str, device: str | torch.device = "cpu") -> OpenClipEmbedder:
        parsed = parse_spec(spec)
        return cls(parsed.model, parsed.checkpoint, device=device)

    def embed(self, chips: Chips) -> np.ndarray:
        pixels = chip_batch(chips)
        if not len(pixels):
            return np.empty((0, self.dimension), dtype=np.float32)
        return run_batch(self._module, pixels, self.device, self.max_batch)


_load_lock = threading.Lock()


@lru_cache(maxsize=4)
def _tower(model: str, checkpoint: str, device: str) -> tuple[_ImageTower, int, str]:
    """The image tower of ``model`` with ``checkpoint``'s weights on ``device``, its output dimension and the
    checkpoint's digest; loaded once per process. FileNotFoundError / ValueError with the reason."""
    path = Path(checkpoint)
    if not path.is_file():
        raise FileNotFoundError(f"OpenCLIP checkpoint {checkpoint} does not exist (or is not a file)")
    import open_clip  # heavy (seconds): only where this embedder is used

    if open_clip.get_model_config(model) is None:
        raise ValueError(f"{model!r} is not an OpenCLIP model config (see open_clip.list_models())")
    with _load_lock:
        try:
            clip = open_clip.create_model(
                model,
                pretrained=str(path),  # absolute: never mistaken for a pretrained tag, which would download
                pretrained_image=False,
                pretrained_text=False,
                device="cpu",
            )
        except (RuntimeError, KeyError) as exc:
            raise ValueError(f"OpenCLIP checkpoint {checkpoint} does not fit model {model!r}: {exc}") from exc
        cfg = open_clip.get_model_preprocess_cfg(clip)
        size = cfg.get("size", 224)
        size = (size, size) if isinstance(size, int) else tuple(size)
        tower = (
            _ImageTower(clip.visual, size, list(cfg["mean"]), list(cfg["std"])).eval().requires_grad_(False)
        )
        del clip
        with torch.inference_mode():
            dimension = int(tower(torch.zeros(1, 3, *size)).shape[-1])
        tower = tower.to(torch.device(device))
    return tower, dimension, _digest(path)


def _digest(path: Path) -> str:
    """The first 12 hex digits of the checkpoint's sha256 (reads the file once, at load)."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:12]
