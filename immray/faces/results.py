"""What analysing one image produces: plain values, ready to store or to print as IMM Figures."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from immray.faces.attributes import FaceAttributes


@dataclass(frozen=True)
class Boundary:
    """A face box in displayed-image pixels (after EXIF rotation), clipped to the image."""

    left: int
    top: int
    width: int
    height: int

    def to_imm(self) -> dict[str, int]:
        return {"Left": self.left, "Top": self.top, "Width": self.width, "Height": self.height}


@dataclass(frozen=True)
class HeadPose:
    """Degrees. yaw > 0: the face turns towards the image's right; pitch > 0: it looks up; roll > 0: it
    leans clockwise as displayed."""

    yaw: float
    pitch: float
    roll: float

    def to_imm(self) -> dict[str, float]:
        return {"Pitch": round(self.pitch, 2), "Roll": round(self.roll, 2), "Yaw": round(self.yaw, 2)}


@dataclass(frozen=True, eq=False)
class Face:
    """One detected face. ``embedding`` comes from the analyzer's Embedder (dlib: 128 floats, compared by
    Euclidean distance); ``landmarks`` are dlib's five points: the outer and inner corner of the eye on the
    image's right, the outer and inner corner of the eye on the image's left, the base of the nose."""

    boundary: Boundary
    confidence: float
    quality: float
    sharpness: float
    head_pose: HeadPose
    landmarks: tuple[tuple[float, float], ...]
    embedding: np.ndarray = field(repr=False)
    # Age, gender and emotion; None when the analyzer was asked not to estimate them.
    attributes: FaceAttributes | None = None

    def to_figure(self) -> dict:
        """The IMM Figure fields this face knows. FigureId and FigureClusterId belong to the store."""
        figure = {
            "FigureType": "face",
            "FigureConfidence": round(self.confidence, 4),
            "Boundary": self.boundary.to_imm(),
            "FaceQuality": round(self.quality, 4),
            "Sharpness": round(self.sharpness, 4),
            "HeadPose": self.head_pose.to_imm(),
        }
        if self.attributes is not None:
            figure.update(self.attributes.to_imm())
        return figure


@dataclass(frozen=True, eq=False)
class AnalyzedImage:
    """An image's displayed size and type, and its faces sorted top to bottom, then left to right."""

    width: int
    height: int
    content_type: str
    faces: list[Face]
