"""The face detector: CenterFace on torch, one forward pass over a batch of equally sized images.

Where the faces are, in the pixels of the tensor it was given, with the network's five landmarks. Which
sizes a photo is shrunk or enlarged to, how photos are grouped into batches and which boxes are kept is
decided in ``strategy``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from functools import lru_cache

import torch

from immray.faces.centerface import MULTIPLE, CenterFaceNet, decode, load_centerface

Point = tuple[float, float]


@dataclass(frozen=True)
class Detection:
    """A detected box (right and bottom exclusive), the detector's raw score and that score mapped to 0-1
    (FigureConfidence; CenterFace's score already is one), and the detector's five landmarks in image
    pixels, CenterFace's order: eye on image-left, eye on image-right, nose tip, mouth corner image-left,
    mouth corner image-right (None where a detector gives none)."""

    left: float
    top: float
    right: float
    bottom: float
    score: float
    confidence: float
    landmarks: tuple[Point, ...] | None = None

    @property
    def side(self) -> float:
        return min(self.right - self.left, self.bottom - self.top)

    def mapped(self, scale_x: float, scale_y: float, dx: float = 0.0, dy: float = 0.0) -> Detection:
        """The box (and landmarks) in another image's pixels: divided by the scale it was found at, then
        shifted."""
        landmarks = (
            None
            if self.landmarks is None
            else tuple((dx + x / scale_x, dy + y / scale_y) for x, y in self.landmarks)
        )
        return replace(
            self,
            left=dx + self.left / scale_x,
            top=dy + self.top / scale_y,
            right=dx + self.right / scale_x,
            bottom=dy + self.bottom / scale_y,
            landmarks=landmarks,
        )


class CenterFaceDetector:
    """CenterFace on one device: ``detect`` takes a (B, 3, H, W) uint8 RGB batch, H and W multiples of 32.
    The network is loaded once per process and device, with one lock shared by all its users, so the
    strategies of several modes take turns on one model instead of fighting over the cores."""

    name = "centerface"

    def __init__(self, device: torch.device | str = "cpu") -> None:
        self.device = torch.device(device)
        self._net, self._lock = _model(str(self.device))

    def detect(self, batch: torch.Tensor, threshold: float, overlap: float) -> list[list[Detection]]:
        """Faces scoring above ``threshold`` in each image of ``batch``, merged at IoU ``overlap``."""
        if batch.ndim != 4 or batch.shape[1] != 3 or batch.shape[2] % MULTIPLE or batch.shape[3] % MULTIPLE:
            raise ValueError(
                f"expected (B, 3, H, W) with H and W multiples of {MULTIPLE}, not {tuple(batch.shape)}"
            )
        cuda = self.device.type == "cuda"
        x = batch.to(self.device, non_blocking=True)
        x = (x.half() if cuda else x.float()).contiguous(memory_format=torch.channels_last)
        with self._lock, torch.inference_mode():
            maps = self._net(x)
            found = decode(*maps, threshold=threshold, overlap=overlap)
        out = []
        for faces in found:
            boxes, scores, marks = (
                faces.boxes.cpu().tolist(),
                faces.scores.cpu().tolist(),
                faces.landmarks.cpu(),
            )
            out.append(
                [
                    Detection(*box, score, score, tuple((float(x), float(y)) for x, y in marks[i].tolist()))
                    for i, (box, score) in enumerate(zip(boxes, scores, strict=True))
                ]
            )
        return out


@lru_cache(maxsize=4)
def _model(device: str) -> tuple[CenterFaceNet, threading.Lock]:
    net = load_centerface(device)
    return net.to(memory_format=torch.channels_last), threading.Lock()
