"""SearchImageFigureCluster: which of a dataset's people is each face of a photo?

Each face of the photo is compared with every clustered face of the dataset; a cluster's distance to it is
the mean of its (up to) ``NEAREST`` closest members, so one look-alike photo in a big cluster does not
decide alone, and a small cluster still counts. The closest cluster is the answer when its Similarity
(``faces.similarity``, the calibration CompareImageFaces uses: 0.5 is the same-person boundary) reaches 0.5;
a face like nobody in the dataset is left out, as IMM lists only the faces that match a cluster.

Where the process has a vector store (``immray.vectors``), Milvus makes the lookup: it finds each face's
``CANDIDATES`` nearest faces of the dataset (one batched search for all the faces of the photo), and the
distances are measured on those faces' embeddings as the store (SQL, the record) keeps them, so the
Similarity is the same calibrated figure as without Milvus. A cluster with fewer of its faces among the
candidates than ``NEAREST`` (and than it has) is scored with the farthest candidate standing in for the
missing ones, a bound no nearer than the truth; when such a cluster would win, its faces are read from the
store and it is scored exactly, so the answer is the one the whole dataset gives (up to Milvus ranking by
the normalised vectors' cosine rather than by the raw embeddings' distance). Unclustered faces Milvus holds
(indexed since the last task) are not candidates.

Without a vector store, or when Milvus fails (logged), the clustered faces of the dataset are read from the
store once and kept in memory until a task or an index request changes them (the key holds the saved
state's version and the dataset's change number), so a run of searches does not read every embedding each
time; the web page's move picker ranks people from the same read.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sqlalchemy import select

from immray import vectors
from immray.clustering.neighbours import normalise
from immray.faces import Analyzer, Boundary
from immray.faces.similarity import distance_similarity, same_person_distance
from immray.services.database import Database
from immray.services.datasets import find_dataset
from immray.services.image_faces import analyze_uri
from immray.sources import Sources
from immray.store import ClusteringState, Dataset, Figure, FigureCluster
from immray.store.types import EMBEDDING_DTYPE
from immray.vectors.store import FaceVectors, collection_name

log = logging.getLogger("immray.services")

NEAREST = 3
CANDIDATES = 64  # nearest faces Milvus is asked for, per face of the photo
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
        find_dataset(session, project, dataset)  # a missing dataset is told before the photo is read
    image = analyze_uri(sources, analyzer, uri)
    threshold = same_person_distance(analyzer.embedder)
    found = nearest_clusters(db, project, dataset, analyzer.embedder.name, [f.embedding for f in image.faces])
    matches = []
    for face, best in zip(image.faces, found, strict=True):
        if best is None:
            continue
        cluster_id, distance = best
        similarity = distance_similarity(distance, threshold)
        if similarity >= MATCH:
            matches.append(ClusterMatch(face.boundary, cluster_id, similarity))
    return matches


def nearest_clusters(
    db: Database,
    project: str,
    dataset: str,
    model: str,
    embeddings: Sequence[np.ndarray],
    *,
    candidates: int = CANDIDATES,
) -> list[tuple[str, float] | None]:
    """For each embedding, (cluster ObjectId, mean distance of its NEAREST closest faces) of the closest
    cluster of the dataset, or None when it has none: through Milvus when the process has a vector store,
    else (or when Milvus fails) from the dataset's clustered faces read whole."""
    if not embeddings:
        return []
    queries = np.stack([np.asarray(e, np.float32) for e in embeddings])
    store = vectors.for_db(db)
    if store is not None:
        try:
            with db.read() as session:
                dataset_id = find_dataset(session, project, dataset).id
            found = _nearest_via_milvus(db, store, dataset_id, model, queries, candidates)
            if found is not None:
                return found
        except Exception:
            log.warning("searching Milvus failed; reading the dataset's faces from the store", exc_info=True)
    with db.read() as session:
        gallery = clustered_faces(session, find_dataset(session, project, dataset), model)
    out: list[tuple[str, float] | None] = []
    for query in queries:
        best = nearest_cluster(gallery, query)
        out.append(None if best is None else (gallery.ids[best[0]], best[1]))
    return out


def _nearest_via_milvus(
    db: Database, store: FaceVectors, dataset_id: int, model: str, queries: np.ndarray, candidates: int
) -> list[tuple[str, float] | None] | None:
    """:func:`nearest_clusters` through Milvus; None when Milvus has no collection for ``model`` (nothing
    of it written yet, or a Milvus that lost it: the store answers)."""
    name = collection_name(store.prefix, model, queries.shape[1])
    if name not in store.collections():
        return None
    hits = store.search(name, dataset_id, normalise(queries), candidates)
    keys = sorted({key for found in hits for key, _ in found})
    with db.read() as session:
        faces = _clustered(session, dataset_id, model, Figure.id.in_(keys)) if keys else {}
        sizes = dict(
            session.execute(
                select(FigureCluster.object_id, FigureCluster.face_count).where(
                    FigureCluster.object_id.in_({cluster for cluster, _ in faces.values()})
                )
            ).all()
        )
    out: list[tuple[str, float] | None] = []
    for query, found in zip(queries, hits, strict=True):
        members: dict[str, list[np.ndarray]] = {}
        for key, _ in found:
            if key in faces:
                cluster, vector = faces[key]
                members.setdefault(cluster, []).append(vector)
        out.append(_closest(db, dataset_id, model, query, members, sizes))
    return out


def _closest(
    db: Database,
    dataset_id: int,
    model: str,
    query: np.ndarray,
    members: dict[str, list[np.ndarray]],
    sizes: dict[str, int],
) -> tuple[str, float] | None:
    """The closest cluster among the candidates' clusters (see the module's docstring for the bound)."""
    if not members:
        return None
    farthest = max(float(np.linalg.norm(v - query)) for vs in members.values() for v in vs)
    scores: dict[str, tuple[float, bool]] = {}  # cluster -> (mean distance or its bound, exact?)
    for cluster, vs in members.items():
        distances = sorted(float(np.linalg.norm(v - query)) for v in vs)[:NEAREST]
        wanted = min(NEAREST, max(sizes.get(cluster, len(vs)), len(vs)))
        exact = len(distances) >= wanted
        distances += [farthest] * (wanted - len(distances))
        scores[cluster] = (sum(distances) / len(distances), exact)
    while True:
        cluster = min(scores, key=lambda c: (scores[c][0], c))
        if scores[cluster][1]:
            return cluster, scores[cluster][0]
        with db.read() as session:  # a cluster whose nearest faces lie beyond the candidates: read it all
            owned = select(FigureCluster.id).where(FigureCluster.object_id == cluster)
            vs = [v for _, v in _clustered(session, dataset_id, model, Figure.cluster_id.in_(owned)).values()]
        if vs:
            distances = sorted(float(np.linalg.norm(v - query)) for v in vs)[:NEAREST]
            scores[cluster] = (sum(distances) / len(distances), True)
        else:
            del scores[cluster]
            if not scores:
                return None


def _clustered(session, dataset_id: int, model: str, where) -> dict[int, tuple[str, np.ndarray]]:
    """face key -> (cluster ObjectId, embedding) of the dataset's clustered live faces of ``model``
    matching ``where``."""
    rows = session.execute(
        select(Figure.id, FigureCluster.object_id, Figure.embedding)
        .join(FigureCluster, FigureCluster.id == Figure.cluster_id)
        .where(
            Figure.dataset_id == dataset_id,
            Figure.deleted_at.is_(None),
            Figure.embedding_model == model,
            where,
        )
    ).all()
    return {
        int(key): (cluster, np.frombuffer(blob, dtype=EMBEDDING_DTYPE).astype(np.float32))
        for key, cluster, blob in rows
    }


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
