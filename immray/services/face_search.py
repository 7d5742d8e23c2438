"""SearchImageFigureCluster: which of a dataset's people is each face of a photo?

Each face of the photo is compared with every clustered face of the dataset; a cluster's distance to it is
the mean of its (up to) ``NEAREST`` closest members, so one look-alike photo in a big cluster does not
decide alone, and a small cluster still counts. The closest cluster is the answer when its Similarity
(``faces.similarity``, the calibration CompareImageFaces uses: 0.5 is the same-person boundary) reaches 0.5;
a face like nobody in the dataset is left out, as IMM lists only the faces that match a cluster.

The clustered faces of a dataset are read once and kept in memory until a task or an index request changes
them (the key holds the saved state's version and the dataset's change number), so a run of searches does
not read every embedding each time.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
from sqlalchemy import select

from immray.faces import Analyzer, Boundary
from immray.faces.similarity import distance_similarity, same_person_distance
from immray.services.database import Database
from immray.services.datasets import find_dataset
from immray.services.image_faces import analyze_uri
from immray.sources import Sources
from immray.store import ClusteringState, Dataset, Figure, FigureCluster
from immray.store.types import EMBEDDING_DTYPE

NEAREST = 3
CACHED_DATASETS = 4
MATCH = 0.5


@dataclass(frozen=True)
class ClusterMatch:
    boundary: Boundary
    cluster_id: str
    similarity: float


@dataclass(frozen=True)
class Gallery:
    """The clustered faces of one dataset: embeddings, and each face's cluster as a code into ``ids``."""

    vectors: np.ndarray  # (n, d) float32
    codes: np.ndarray  # (n,) int64
    ids: list[str]


_lock = threading.Lock()
_galleries: OrderedDict[tuple, Gallery] = OrderedDict()


def search_clusters(
    db: Database, sources: Sources, analyzer: Analyzer, project: str, dataset: str, uri: str
) -> list[ClusterMatch]:
    """The matching cluster of each face of the photo at ``uri`` (faces that match none are left out)."""
    with db.read() as session:
        row = find_dataset(session, project, dataset)
        gallery = clustered_faces(session, row, analyzer.embedder.name)
    image = analyze_uri(sources, analyzer, uri)
    threshold = same_person_distance(analyzer.embedder)
    matches = []
    for face in image.faces:
        best = nearest_cluster(gallery, face.embedding)
        if best is None:
            continue
        code, distance = best
        similarity = distance_similarity(distance, threshold)
        if similarity >= MATCH:
            matches.append(ClusterMatch(face.boundary, gallery.ids[code], similarity))
    return matches


def clustered_faces(session, dataset: Dataset, model: str) -> Gallery:
    """The clustered faces of ``dataset`` described by ``model``, read once and kept until a task or an
    index request changes them (also what the web page's move picker ranks people by)."""
    version = session.scalar(select(ClusteringState.version).where(ClusteringState.dataset_id == dataset.id))
    key = (dataset.id, dataset.created_at, version, dataset.change_seq, model)
    gallery = _cached(key)
    if gallery is None:
        gallery = _read_gallery(session, dataset.id, model)
        _remember(key, gallery)
    return gallery


def nearest_cluster(gallery: Gallery, embedding: np.ndarray) -> tuple[int, float] | None:
    """(cluster code, mean distance of its NEAREST closest faces) of the closest cluster, or None."""
    if not len(gallery.codes):
        return None
    query = np.asarray(embedding, dtype=np.float32)
    distances = np.sqrt(np.maximum(((gallery.vectors - query) ** 2).sum(axis=1), 0.0))
    order = np.lexsort((distances, gallery.codes))  # by cluster, then by distance
    codes, sorted_distances = gallery.codes[order], distances[order]
    starts = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]])
    rank = np.arange(len(codes)) - np.repeat(starts, np.diff(np.r_[starts, len(codes)]))
    keep = rank < NEAREST
    size = np.bincount(codes[keep], minlength=len(gallery.ids))
    total = np.bincount(codes[keep], weights=sorted_distances[keep], minlength=len(gallery.ids))
    present = size > 0
    mean = np.full(len(gallery.ids), np.inf)
    mean[present] = total[present] / size[present]
    code = int(np.argmin(mean))
    return code, float(mean[code])


def _read_gallery(session, dataset_id: int, model: str) -> Gallery:
    rows = session.execute(
        select(FigureCluster.object_id, Figure.embedding)
        .join(FigureCluster, FigureCluster.id == Figure.cluster_id)
        .where(
            Figure.dataset_id == dataset_id,
            Figure.deleted_at.is_(None),
            Figure.embedding_model == model,
        )
        .order_by(FigureCluster.object_id, Figure.id)
    ).all()
    ids: list[str] = []
    code_of: dict[str, int] = {}
    codes = np.empty(len(rows), np.int64)
    blobs = []
    for i, (object_id, blob) in enumerate(rows):
        codes[i] = code_of.setdefault(object_id, len(code_of))
        if codes[i] == len(ids):
            ids.append(object_id)
        blobs.append(blob)
    if not rows:
        return Gallery(np.zeros((0, 0), np.float32), codes, ids)
    vectors = np.frombuffer(b"".join(blobs), dtype=EMBEDDING_DTYPE).astype(np.float32).reshape(len(rows), -1)
    return Gallery(vectors, codes, ids)


def _cached(key: tuple) -> Gallery | None:
    with _lock:
        gallery = _galleries.get(key)
        if gallery is not None:
            _galleries.move_to_end(key)
        return gallery


def _remember(key: tuple, gallery: Gallery) -> None:
    with _lock:
        _galleries[key] = gallery
        while len(_galleries) > CACHED_DATASETS:
            _galleries.popitem(last=False)
