"""Age, gender and emotion of faces, from face-api's shipped networks (``faceapi``), a batch at a time.

Only what a shipped model estimates is given: Age (years) with AgeSD (the age network is a plain regression
with no spread of its own: AgeSD is its error calibrated on labeled photos, ``immray.faces.age_error``, and
absent below the ages calibrated), Gender (``male``/``female``) with the network's probability as
GenderConfidence, and Emotion in IMM's words with its probability. Glasses, hat, mask, beard, mouth and
attractiveness stay absent: no shipped model estimates them.

Each network reads the detected box as face-api crops it (``faceapi.face_input``), not the aligned chip the
embedder reads.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from immray.faces.age_error import AGE_ERROR
from immray.faces.faceapi import EXPRESSIONS, crop_box, face_input, load_age_gender, load_expression

#: face-api's expression -> IMM's Emotion value (IMM's examples use nouns: ``happiness``).
IMM_EMOTIONS = {
    "neutral": "none",
    "happy": "happiness",
    "sad": "sadness",
    "angry": "anger",
    "fearful": "fear",
    "disgusted": "disgust",
    "surprised": "surprise",
}
GENDERS = ("male", "female")


@dataclass(frozen=True)
class FaceAttributes:
    """What the attribute networks say of one face."""

    age: int
    gender: str
    gender_confidence: float
    emotion: str
    emotion_confidence: float
    age_sd: float | None = None

    def to_imm(self) -> dict:
        out: dict = {"Age": self.age}
        if self.age_sd is not None:
            out["AgeSD"] = self.age_sd
        out.update(
            Gender=self.gender,
            GenderConfidence=round(self.gender_confidence, 4),
            Emotion=self.emotion,
            EmotionConfidence=round(self.emotion_confidence, 4),
        )
        return out


class AttributeEstimator:
    """Both networks, loaded once per device (``get_attribute_estimator``)."""

    def __init__(self, device: torch.device | str = "cpu") -> None:
        self.device = torch.device(device)
        self.age_gender = load_age_gender(self.device)
        self.expression = load_expression(self.device)
        self._lock = threading.Lock()

    def estimate(
        self, pixels: np.ndarray, boxes: list[tuple[float, float, float, float]]
    ) -> list[FaceAttributes | None]:
        """Attributes of each (left, top, right, bottom) box of one (H, W, 3) uint8 RGB image."""
        return self.estimate_batch([(pixels, boxes)])[0]

    def estimate_batch(
        self, images: list[tuple[np.ndarray, list[tuple[float, float, float, float]]]]
    ) -> list[list[FaceAttributes | None]]:
        """Per image, per box: its attributes (None for a box with nothing left inside the image). All the
        faces of all the images go through each network in one forward pass."""
        inputs: list[np.ndarray] = []
        slots: list[list[int | None]] = []
        for pixels, boxes in images:
            height, width = pixels.shape[:2]
            row: list[int | None] = []
            for box in boxes:
                clipped = crop_box(box, width, height)
                if clipped is None:
                    row.append(None)
                    continue
                row.append(len(inputs))
                inputs.append(face_input(pixels, clipped))
            slots.append(row)
        found = self._run(np.stack(inputs)) if inputs else []
        return [[None if i is None else found[i] for i in row] for row in slots]

    def _run(self, batch: np.ndarray) -> list[FaceAttributes]:
        x = torch.from_numpy(batch).to(self.device)
        with self._lock, torch.inference_mode():
            age, gender_logits = self.age_gender(x)
            expressions = self.expression(x).softmax(1)
            genders = gender_logits.softmax(1)
        out = []
        for years, gender, expression in zip(
            age.float().cpu().numpy(),
            genders.float().cpu().numpy(),
            expressions.float().cpu().numpy(),
            strict=True,
        ):
            g = int(np.argmax(gender))
            e = int(np.argmax(expression))
            whole = max(0, int(round(float(years))))
            out.append(
                FaceAttributes(
                    age=whole,
                    age_sd=AGE_ERROR.sd(whole),
                    gender=GENDERS[g],
                    gender_confidence=float(gender[g]),
                    emotion=IMM_EMOTIONS[EXPRESSIONS[e]],
                    emotion_confidence=float(expression[e]),
                )
            )
        return out


@lru_cache(maxsize=4)
def get_attribute_estimator(device: str = "cpu") -> AttributeEstimator:
    """The process's estimator on ``device`` (the networks load once)."""
    return AttributeEstimator(device)
