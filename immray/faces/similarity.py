"""Embedding distance -> a 0-1 Similarity, calibrated so 0.5 is the model's same-person boundary.

IMM's CompareImageFaces and SearchImageFigureCluster answer a Similarity between 0 and 1. Embedders here
compare by Euclidean distance and have a distance below which two faces are usually the same person
(dlib's ResNet: 0.6, the threshold its authors report 99.38 % LFW accuracy at). The map is the logistic

    similarity = 1 / (1 + exp((distance - threshold) / (SPREAD * threshold)))

so ``distance == threshold`` gives exactly 0.5, closer faces approach 1, farther ones 0. SPREAD = 0.15
makes a distance of 2/3 of the threshold (0.4 for dlib, a clear match) about 0.9 and 4/3 of it (0.8, a
clear non-match) about 0.1. The map is monotonic, so ranking by Similarity is ranking by distance.
"""

from __future__ import annotations

import math

import numpy as np

DEFAULT_SAME_PERSON_DISTANCE = 0.6  # dlib-resnet-v1
SPREAD = 0.15


def same_person_distance(embedder: object) -> float:
    """The embedder's boundary distance (an embedder may declare ``same_person_distance``), else dlib's."""
    value = getattr(embedder, "same_person_distance", None)
    return float(value) if value else DEFAULT_SAME_PERSON_DISTANCE


def distance_similarity(distance: float, threshold: float = DEFAULT_SAME_PERSON_DISTANCE) -> float:
    """Similarity (0-1) of two faces ``distance`` apart; 0.5 at ``threshold``."""
    z = (float(distance) - threshold) / (SPREAD * threshold)
    if z > 700:  # exp overflows; the similarity is 0 to every printed digit
        return 0.0
    return 1.0 / (1.0 + math.exp(z))


def embedding_similarity(
    a: np.ndarray, b: np.ndarray, threshold: float = DEFAULT_SAME_PERSON_DISTANCE
) -> float:
    """Similarity of two embeddings (Euclidean distance through :func:`distance_similarity`)."""
    distance = float(np.linalg.norm(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)))
    return distance_similarity(distance, threshold)
