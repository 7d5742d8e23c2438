"""Synthetic faces for tests/vectors: people as points on the 128-d sphere, their faces near them."""

from __future__ import annotations

import numpy as np


def people_faces(
    people: int, per_person: int, seed: int = 0, spread: float = 0.15
) -> tuple[np.ndarray, list[int]]:
    """(people * per_person, 128) float32 embeddings (not normalised) and each face's person."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((people, 128))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    faces, who = [], []
    for p in range(people):
        noise = rng.standard_normal((per_person, 128)) * spread / np.sqrt(128)
        faces.append(centres[p] + noise)
        who += [p] * per_person
    order = rng.permutation(people * per_person)
    return (np.concatenate(faces)[order] * 3.0).astype(np.float32), [who[i] for i in order]
