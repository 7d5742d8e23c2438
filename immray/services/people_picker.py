"""What the web page's move picker needs and no IMM action answers: the people nearest to one face, and an
empty person for a face to start.

Nearest people: each person's centroid (the mean of its faces' embeddings) against the face's embedding, by
Euclidean distance as every embedder here compares faces. The faces come from the same cached read of a
dataset's clustered faces that SearchImageFigureCluster uses (``face_search.clustered_faces``: read once,
kept until a task or a change moves a face), so opening the picker on face after face reads them once.

A new person: an empty cluster row that ``UpdateFileMeta`` can then move the face into; the next clustering
task takes the move as a person the user started (``clustering.Move`` into an id the state does not know).
"""

from __future__ import annotations

import numpy as np
from sqlalchemy import select

from immray.protocol.errors import ImmError
from immray.services.database import Database
from immray.services.datasets import find_dataset
from immray.services.face_search import Gallery, clustered_faces
from immray.store import Figure, FigureCluster
from immray.store.types import EMBEDDING_DTYPE


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
        gallery = clustered_faces(session, row, model)
    if not gallery.ids:
        return []
    query = np.frombuffer(embedding, dtype=EMBEDDING_DTYPE).astype(np.float32)
    distances = np.linalg.norm(centroids(gallery) - query, axis=1)
    ranked = [gallery.ids[i] for i in np.argsort(distances, kind="stable")]
    return [cluster_id for cluster_id in ranked if cluster_id != current][:limit]


def centroids(gallery: Gallery) -> np.ndarray:
    """(clusters, d) float32: the mean embedding of each cluster of the gallery (summed in float64)."""
    sums = np.zeros((len(gallery.ids), gallery.vectors.shape[1]))
    np.add.at(sums, gallery.codes, gallery.vectors)
    counts = np.bincount(gallery.codes, minlength=len(gallery.ids))
    return (sums / counts[:, None]).astype(np.float32)


def new_person(db: Database, project: str, dataset: str) -> str:
    """An empty person of the dataset for a face to be moved into; its ObjectId."""
    with db.write() as session:
        row = find_dataset(session, project, dataset)
        cluster = FigureCluster(dataset_id=row.id)
        session.add(cluster)
        session.flush()
        return cluster.object_id
