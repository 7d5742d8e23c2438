"""The clustering methods the cross-validated protocol compares, each with the small grid of settings it may
choose from on the training folds (``quality_folds``).

A method turns labeled faces into labels (``None`` = left alone) and, where it has one, a per-face confidence.
MinFaces is applied to every method alike: the engine founds no cluster with fewer good faces, and a baseline's
clusters smaller than MinFaces are dissolved (their faces left alone), which is what IMM would show.
The baselines run on the raw embeddings, as those tools use them; their grids cover each one's usual cut.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from immray.bench.dev_faces import LabeledFaces
from immray.clustering import Change, ClusteringConfig, Engine, NewFace


@dataclass
class Clustering:
    labels: list  # per face: a cluster label, or None when left alone
    confidence: np.ndarray | None = None  # per face, the engine's FigureClusterConfidence (0 when alone)
    merges: int = 0  # automatic merges of existing clusters (increments only)


Settings = dict[str, float | int]


@dataclass(frozen=True)
class Method:
    name: str
    grid: list[Settings]
    batch: Callable[[LabeledFaces, Settings, int], Clustering]
    # Faces fed in ``increments`` parts in a random order (seed); None for batch-only methods.
    incremental: Callable[[LabeledFaces, Settings, int, int, int], Clustering] | None = None


def new_faces(faces: LabeledFaces, indices: np.ndarray) -> list[NewFace]:
    return [
        NewFace(int(i), faces.embeddings[i], str(faces.paths[i]), float(faces.quality[i]))
        for i in indices.tolist()
    ]


def _read(state, config: ClusteringConfig, n: int, merges: int = 0) -> Clustering:
    """Each face's cluster and its confidence as the final state gives it (what a reader sees afterwards)."""
    from immray.clustering.journal import Journal

    rows = np.array([state.row_of[i] for i in range(n)], np.int64)
    confidence = Journal(state).confidence(rows, config)
    return Clustering([state.cluster_of(i) for i in range(n)], confidence, merges)


def engine_config(base: ClusteringConfig, settings: Settings) -> ClusteringConfig:
    return replace(base, **settings)


def engine_batch(base: ClusteringConfig) -> Callable[[LabeledFaces, Settings, int], Clustering]:
    def run(faces: LabeledFaces, settings: Settings, min_faces: int) -> Clustering:
        config = engine_config(base, settings)
        engine = Engine(config)
        state = engine.new_state("bench")
        engine.update(state, Change(added=new_faces(faces, np.arange(len(faces)))), min_faces=min_faces)
        return _read(state, config, len(faces))

    return run


def engine_incremental(base: ClusteringConfig):
    def run(
        faces: LabeledFaces, settings: Settings, min_faces: int, increments: int, seed: int
    ) -> Clustering:
        config = engine_config(base, settings)
        engine = Engine(config)
        state = engine.new_state("bench")
        order = np.random.default_rng(seed).permutation(len(faces))
        results = [
            engine.update(state, Change(added=new_faces(faces, part)), min_faces=min_faces)
            for part in np.array_split(order, increments)
        ]
        merges = sum(len(m.absorbed) for r in results for m in r.merged)
        return _read(state, config, len(faces), merges)

    return run


def min_faces_rule(labels, min_faces: int) -> list:
    """Labels with every cluster smaller than ``min_faces`` dissolved (noise, -1, is alone already)."""
    labels = [None if lab is None or lab == -1 else lab for lab in labels]
    values, counts = np.unique([str(lab) for lab in labels if lab is not None], return_counts=True)
    small = set(values[counts < min_faces].tolist())
    return [None if lab is None or str(lab) in small else lab for lab in labels]


def _baseline(fit: Callable[[np.ndarray, Settings], list]):
    def run(faces: LabeledFaces, settings: Settings, min_faces: int) -> Clustering:
        return Clustering(min_faces_rule(fit(faces.embeddings, settings), min_faces))

    return run


def _hdbscan(x: np.ndarray, s: Settings) -> list:
    import hdbscan

    return (
        hdbscan.HDBSCAN(min_cluster_size=int(s["min_cluster_size"]), min_samples=int(s["min_samples"]))
        .fit_predict(x)
        .tolist()
    )


def _average_linkage(x: np.ndarray, s: Settings) -> list:
    from sklearn.cluster import AgglomerativeClustering

    cut = AgglomerativeClustering(n_clusters=None, linkage="average", distance_threshold=float(s["cut"]))
    return cut.fit_predict(x).tolist()


def _chinese_whispers(x: np.ndarray, s: Settings) -> list:
    from immray.bench.chinese_whispers import chinese_whispers

    return chinese_whispers(x, float(s["threshold"]))


# The engine's one similarity scale (the other bars derive from it), around the embedder's calibration.
ENGINE_GRID: list[Settings] = [{"join_threshold": j} for j in (0.93, 0.94, 0.95, 0.96)]


def engine_method(base: ClusteringConfig, grid: list[Settings], name: str = "immray engine") -> Method:
    return Method(name, grid, engine_batch(base), engine_incremental(base))


def baseline_methods() -> list[Method]:
    return [
        Method(
            "HDBSCAN",
            [{"min_cluster_size": m, "min_samples": s} for m in (2, 3) for s in (1, 2, 3)],
            _baseline(_hdbscan),
        ),
        Method("average linkage", [{"cut": c} for c in (0.45, 0.5, 0.55, 0.6)], _baseline(_average_linkage)),
        Method(
            "Chinese whispers",
            [{"threshold": t} for t in (0.4, 0.45, 0.5, 0.55)],
            _baseline(_chinese_whispers),
        ),
    ]
