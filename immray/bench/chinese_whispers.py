"""Chinese whispers (Biemann 2006), as dlib's ``chinese_whispers_clustering`` runs it, for the quality bench's
baseline without dlib: faces closer than ``threshold`` (Euclidean) are linked with weight 1; each face, in a
random order, takes the label most of its neighbours have; ``iterations`` rounds. Seeded, so repeatable."""

from __future__ import annotations

import numpy as np


def chinese_whispers(x: np.ndarray, threshold: float, iterations: int = 100, seed: int = 0) -> list[int]:
    x = np.asarray(x, np.float32)
    n = len(x)
    squared = (x * x).sum(1)
    neighbours: list[np.ndarray] = []
    for lo in range(0, n, 2048):  # blocked: n x n distances never held at once
        block = squared[lo : lo + 2048, None] + squared[None, :] - 2 * x[lo : lo + 2048] @ x.T
        for offset, row in enumerate(block < threshold * threshold):
            row[lo + offset] = False
            neighbours.append(np.flatnonzero(row))
    labels = np.arange(n)
    rng = np.random.default_rng(seed)
    for _ in range(iterations):
        changed = False
        for i in rng.permutation(n):
            if not len(neighbours[i]):
                continue
            values, counts = np.unique(labels[neighbours[i]], return_counts=True)
            best = int(values[np.argmax(counts)])  # ties: the lowest label
            if best != labels[i]:
                labels[i], changed = best, True
        if not changed:
            break
    return labels.tolist()
