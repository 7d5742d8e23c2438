"""What the web page's move picker needs and no IMM action answers: the people nearest to one face, and an
empty person for a face to start.

Nearest people: each person's centroid (the mean of its faces' embeddings, from the store) against the
face's embedding, by Euclidean distance as every embedder here compares faces. The centroids of a dataset
are computed once and kept until a task or a change moves a face (the key holds the saved state's version
and the dataset's change number), so opening the picker on face after face reads the embeddings once.

A new person: an empty cluster row that ``UpdateFileMeta`` can then move the face into; the next clustering
task takes the move as a person the user started (``clustering.Move`` into an id the state does not know).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
from sqlalchemy import select

from immray.protocol.errors import ImmError
from immray.services.database import Database
from immray.services.datasets import find_dataset
from immray.store import ClusteringState, Figure, FigureCluster
from immray.store.types import EMBEDDING_DTYPE

CACHED_DATASETS = 4
READ_CHUNK = 2000


@dataclass(frozen=True)
class _Centroids:
    ids: list[str]  # cluster ObjectIds
    vectors: np.ndarray  # (len(ids), d) float32, one mean embedding per cluster
    model: str


_lock = threading.Lock()
_cache: OrderedDict[tuple, _Centroids] = OrderedDict()


def nearest_people(db: Database, project: str, dataset: str, figure_id: str, limit: int = 6) -> list[str]:
    """ObjectIds of the people whose centroid is nearest to face ``figure_id``, nearest first, leaving out
    the person the face is in now. Empty when the face has no comparable embedding or no other person."""
    with db.read() as session:
        row = find_dataset(session, project, dataset)
        face = session.execute(
            select(Figure.embedding, Figure.embedding_model, FigureCluster.object_id)
            .outerjoin(FigureCluster, FigureCluster.id == Figure.cluster_id)
            .where(Figure.dataset_id == row.id, Figure.figure_id == figure_id, Figure.deleted_at.is_(None))
        ).first()
        if face is None:
            raise ImmError.resource_not_found("figure", figure_id[:64])
        embedding, model, current = face
        version = session.scalar(select(ClusteringState.version).where(ClusteringState.dataset_id == row.id))
        key = (row.id, row.created_at, version, row.change_seq, model)
        centroids = _cached(key)
        if centroids is None:
            centroids = _read_centroids(session, row.id, model)
            _remember(key, centroids)
    if not centroids.ids:
        return []
    query = np.frombuffer(embedding, dtype=EMBEDDING_DTYPE).astype(np.float32)
    distances = np.linalg.norm(centroids.vectors - query, axis=1)
    ranked = [centroids.ids[i] for i in np.argsort(distances, kind="stable")]
    return [cluster_id for cluster_id in ranked if cluster_id != current][:limit]


def new_person(db: Database, project: str, dataset: str) -> str:
    """An empty person of the dataset for a face to be moved into; its ObjectId."""
    with db.write() as session:
        row = find_dataset(session, project, dataset)
        cluster = FigureCluster(dataset_id=row.id)
        session.add(cluster)
        session.flush()
        return cluster.object_id


def _read_centroids(session, dataset_id: int, model: str) -> _Centroids:
    """Summed in chunks, so a big dataset's embeddings are never all in memory at once."""
    rows = session.execute(
        select(FigureCluster.object_id, Figure.embedding)
        .join(FigureCluster, FigureCluster.id == Figure.cluster_id)
        .where(Figure.dataset_id == dataset_id, Figure.deleted_at.is_(None), Figure.embedding_model == model)
        .execution_options(yield_per=READ_CHUNK)
    )
    code_of: dict[str, int] = {}
    sums: np.ndarray | None = None
    counts = np.zeros(0, np.int64)
    for part in rows.partitions():
        codes = np.array([code_of.setdefault(object_id, len(code_of)) for object_id, _ in part], np.int64)
        vectors = np.frombuffer(b"".join(blob for _, blob in part), dtype=EMBEDDING_DTYPE)
        vectors = vectors.astype(np.float64).reshape(len(part), -1)
        if sums is None:
            sums = np.zeros((0, vectors.shape[1]))
        grow = len(code_of) - len(sums)
        sums = np.vstack([sums, np.zeros((grow, sums.shape[1]))])
        counts = np.concatenate([counts, np.zeros(grow, np.int64)])
        order = np.argsort(codes, kind="stable")
        present, starts = np.unique(codes[order], return_index=True)
        sums[present] += np.add.reduceat(vectors[order], starts, axis=0)
        counts += np.bincount(codes, minlength=len(code_of))
    if sums is None:
        return _Centroids([], np.zeros((0, 0), np.float32), model)
    return _Centroids(list(code_of), (sums / counts[:, None]).astype(np.float32), model)


def _cached(key: tuple) -> _Centroids | None:
    with _lock:
        found = _cache.get(key)
        if found is not None:
            _cache.move_to_end(key)
        return found


def _remember(key: tuple, centroids: _Centroids) -> None:
    with _lock:
        _cache[key] = centroids
        while len(_cache) > CACHED_DATASETS:
            _cache.popitem(last=False)
