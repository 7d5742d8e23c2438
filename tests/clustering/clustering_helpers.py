"""Small synthetic people for the clustering tests: unit vectors around a random centre per person."""

from __future__ import annotations

import numpy as np

from immray.clustering import Change, ClusterState, Engine, NewFace

DIM = 32


class People:
    """Makes faces of distinct synthetic people; same person = cosine ~0.95, different ~0."""

    def __init__(self, seed: int = 0, spread: float = 0.2) -> None:
        self.rng = np.random.default_rng(seed)
        self.spread = spread
        self.centres: dict[str, np.ndarray] = {}
        self.serial = 0

    def centre(self, person: str) -> np.ndarray:
        if person not in self.centres:
            c = self.rng.normal(size=DIM)
            self.centres[person] = c / np.linalg.norm(c)
        return self.centres[person]

    def vector(self, person: str, spread: float | None = None) -> np.ndarray:
        s = self.spread if spread is None else spread
        v = self.centre(person) + s * self.rng.normal(size=DIM) / np.sqrt(DIM)
        return (v / np.linalg.norm(v)).astype(np.float32)

    def faces(self, person: str, n: int, *, quality: float = 0.9, image: str | None = None) -> list[NewFace]:
        out = []
        for _ in range(n):
            self.serial += 1
            fid = f"{person}-{self.serial:04d}"
            out.append(NewFace(fid, self.vector(person), image or f"img-{fid}", quality))
        return out


def groups(state: ClusterState) -> list[list[str]]:
    """The clusters as sorted lists of face ids, without their ids (for comparing partitions)."""
    return sorted(sorted(map(str, faces)) for faces in state.clusters().values())


def add(engine: Engine, state: ClusterState, faces: list[NewFace], **kw):
    return engine.update(state, Change(added=faces), **kw)
