"""What the face pipeline can be asked to do. Filled from immray.settings by the callers, not here."""

from __future__ import annotations

from dataclasses import dataclass

DETECTORS = ("accurate", "fast", "hog", "cnn")
#: The former dlib detectors' names, still accepted: the torch mode each now means.
DETECTOR_ALIASES = {"cnn": "accurate", "hog": "fast"}


def canonical_detector(name: str) -> str:
    """``accurate`` or ``fast`` for a configured detector name (aliases resolved)."""
    return DETECTOR_ALIASES.get(name, name)


@dataclass(frozen=True)
class AnalyzerConfig:
    """Frozen, hence hashable: one Analyzer (and one set of loaded models) per distinct config.

    - ``detector``: ``accurate`` (CenterFace on the photo at up to its own scale, low threshold) or
      ``fast`` (CenterFace on the photo shrunk so a ``min_face_px`` face is ~20 px: a quarter of the cost);
      see ``strategy``. ``cnn`` and ``hog`` (the former dlib detectors) are kept as aliases of ``accurate``
      and ``fast`` so existing settings keep working.
    - ``max_image_pixels``: images declaring more pixels are refused as ImageTooLarge before decoding.
    - ``detect_max_side``: larger images are downscaled to this longest side for detection only; faces are
      still landmarked and embedded from the full-resolution image.
    - ``min_face_px``: the smallest face side, in original pixels, detection must find; it sets the scale
      photos are shown to the detector at, and boxes much smaller than it are dropped.
    - ``max_upsample``: a cap on enlarging a photo for detection: at most ``2 ** max_upsample`` times (a
      small photo is enlarged only as far as its ``min_face_px`` faces need).
    - ``mirror``: each descriptor is the average of the face's and its mirror image's (``MirroredEmbedder``):
      twice the descriptor work (one more forward pass: about 6 ms of CPU per face on one torch thread, at
      the 172 descriptors per CPU-second `python -m immray.bench.throughput` measures); the embedder's name
      changes with it, so stored vectors never mix. On by default: on the LFW dev set, measured with the dlib
      pipeline this one reproduces, the clustering engine gained 0.44 point of BCubed F1 in one batch
      (0.9741 -> 0.9785, MinFaces 2; the torch pipeline gives 0.9785 mirrored) and kept its increments
      within 0.01 of the batch (`python -m immray.bench.quality`, `python -m immray.bench.mirror_quality`).
    - ``embedder``: ``dlib-resnet-v1`` (dlib's ResNet on torch, the default) or
      ``open_clip:<model>@<checkpoint path>`` (an OpenCLIP image tower of one's own; see ``embed``).
    - ``attributes``: estimate each face's age, gender and emotion (face-api's networks, ``attributes``) in
      the same batch; off saves their cost (``python -m immray.bench.attributes`` measures it).
    - ``device``: ``auto`` (the GPU this process sees, else the CPU), ``cpu``, ``cuda`` or ``cuda:N``.
    """

    detector: str = "accurate"
    max_image_pixels: int = 100_000_000
    detect_max_side: int = 2048
    min_face_px: int = 40
    max_upsample: int = 1
    mirror: bool = True
    embedder: str = "dlib-resnet-v1"
    device: str = "auto"
    attributes: bool = True

    def __post_init__(self) -> None:
        if self.detector not in DETECTORS:
            raise ValueError(f"detector must be one of {', '.join(DETECTORS)}, not {self.detector!r}")
        for name in ("max_image_pixels", "detect_max_side", "min_face_px"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer")
        if self.max_upsample < 0:
            raise ValueError("max_upsample must be 0 or more")
