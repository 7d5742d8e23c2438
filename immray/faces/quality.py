"""How usable a face is for recognition: sharpness, head pose and an overall quality, all cheap.

The clustering engine only founds a new person on "good" faces (IMM: larger than 75 px, |yaw|, |pitch|,
|roll| under 30 degrees, quality over 0.8), so these numbers decide what becomes a cluster.
"""

from __future__ import annotations

import math

import numpy as np

from immray.faces.results import HeadPose

# dlib's 5-point template (get_face_chip_details): the nose base sits this many eye distances below the
# midpoint of the two eye centres in a frontal face. It matches the mean over LFW photos (0.77).
_TEMPLATE = np.array(
    [[0.8595674595992, 0.2134981538014], [0.6460604764104, 0.2289674387677],
     [0.1205750620789, 0.2137274526848], [0.3340850613712, 0.2290642403242],
     [0.4901123135679, 0.6277975316475]]
)  # fmt: skip
_EYE_RIGHT, _EYE_LEFT = _TEMPLATE[0:2].mean(0), _TEMPLATE[2:4].mean(0)
FRONTAL_NOSE_DROP = float(
    (_TEMPLATE[4, 1] - (_EYE_RIGHT[1] + _EYE_LEFT[1]) / 2) / (_EYE_RIGHT[0] - _EYE_LEFT[0])
)
#: How far the nose base stands in front of the eye corners, in eye distances (anthropometric estimate,
#: ~25 mm against ~62 mm between the eyes). It turns the nose's offset into angles.
NOSE_DEPTH = 0.4

#: Laplacian variance of a chip at which sharpness reaches 1 - 1/e. Measured on 150 px dlib chips: LFW
#: faces have a median of ~40 (sharpness ~0.75), a 2 px Gaussian blur brings them to ~3 (~0.1).
_SHARPNESS_SCALE = 30.0
#: IMM's size for a "good" face; smaller faces lose quality in proportion.
GOOD_FACE_PX = 75
#: Sharpness above which blur no longer costs quality.
_SHARP_ENOUGH = 0.6


def sharpness(chip: np.ndarray, padding: float) -> float:
    """Normalised variance of the Laplacian over the face part of an aligned chip (0 blurred - 1 sharp).

    Measured on the chip, so a small face upscaled to the chip size counts as blurred: it carries little
    detail for the recogniser either way.
    """
    size = chip.shape[0]
    margin = int(round(size * padding / (1 + 2 * padding)))
    grey = chip[margin : size - margin, margin : size - margin].astype(np.float32) @ np.array(
        [0.299, 0.587, 0.114], dtype=np.float32
    )
    laplacian = grey[1:-1, :-2] + grey[1:-1, 2:] + grey[:-2, 1:-1] + grey[2:, 1:-1] - 4.0 * grey[1:-1, 1:-1]
    return float(1.0 - math.exp(-float(laplacian.var()) / _SHARPNESS_SCALE))


def head_pose(landmarks: tuple[tuple[float, float], ...]) -> HeadPose:
    """Yaw, pitch and roll in degrees from dlib's five points, with a rigid-face model.

    Roll is the slope of the line between the eyes. In the de-rolled frame, the nose base's sideways offset
    from the eyes' midpoint is ``NOSE_DEPTH * tan(yaw)`` eye distances, and its drop below them is
    ``FRONTAL_NOSE_DROP * cos(pitch) - NOSE_DEPTH * sin(pitch)``. Five points give a rough estimate
    (a few degrees near frontal; looking down past ~25 degrees is not told apart), enough to gate faces.
    """
    p = np.asarray(landmarks, dtype=np.float64)
    right_eye, left_eye, nose = p[0:2].mean(0), p[2:4].mean(0), p[4]
    dx, dy = right_eye - left_eye
    eye_distance = math.hypot(dx, dy)
    if eye_distance < 1e-6:
        return HeadPose(0.0, 0.0, 0.0)
    roll = math.atan2(dy, dx)
    offset = nose - (right_eye + left_eye) / 2
    along = (offset[0] * math.cos(roll) + offset[1] * math.sin(roll)) / eye_distance
    down = (-offset[0] * math.sin(roll) + offset[1] * math.cos(roll)) / eye_distance
    yaw = math.atan(along / NOSE_DEPTH)
    drop = down * math.cos(yaw)  # the eyes look closer together when the head turns
    radius = math.hypot(FRONTAL_NOSE_DROP, NOSE_DEPTH)
    pitch = math.acos(max(-1.0, min(1.0, drop / radius))) - math.atan2(NOSE_DEPTH, FRONTAL_NOSE_DROP)
    return HeadPose(yaw=math.degrees(yaw), pitch=math.degrees(pitch), roll=math.degrees(roll))


def face_quality(face_px: float, sharpness_value: float, pose: HeadPose) -> float:
    """0-1: size (full at IMM's 75 px), sharpness (full from 0.6) and how frontal the face is."""
    size_score = min(1.0, face_px / GOOD_FACE_PX)
    sharp_score = min(1.0, sharpness_value / _SHARP_ENOUGH)
    pose_score = max(0.0, math.cos(math.radians(pose.yaw)) * math.cos(math.radians(pose.pitch)))
    return size_score * sharp_score * pose_score
