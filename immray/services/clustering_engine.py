"""The clustering engine as the services use it: one config, IMM-shaped cluster ids, one salt per dataset.

Cluster ObjectIds look like IMM's (``Cluster-<uuid4>``) yet are derived, not drawn: the engine asks its id
factory for (dataset salt, clusters created so far, founding face), and the same question always gets the
same id. A task that crashed between the engine and its commit therefore gives, when it runs again on the
same state, the very same ids; an id, once committed, stays with its person for good.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from immray.clustering import ClusteringConfig, ClusterState, Engine
from immray.clustering.neighbours import normalise
from immray.clustering.types import FaceId
from immray.store import Figure
from immray.store.types import EMBEDDING_DTYPE
from immray.vectors.index import DatasetIndexes, MilvusIndex

_FACES_PER_QUERY = 5_000  # embeddings read per SELECT when a state's index is restored


def cluster_object_id(salt: str, serial: int, founder: FaceId) -> str:
    """``Cluster-<uuid4>`` from a digest of (salt, serial, founder): random-looking, unique, repeatable."""
    kind = "i" if isinstance(founder, int) else "s"
    digest = hashlib.sha256("\x1f".join((salt, str(serial), f"{kind}:{founder}")).encode()).digest()
    return f"Cluster-{uuid.UUID(bytes=digest[:16], version=4)}"


def dataset_salt(dataset_id: int, created_at: datetime) -> str:
    """Seeds a dataset's cluster ids. The creation time keeps a re-used row id (SQLite) from re-using ids."""
    return f"dataset:{dataset_id}:{created_at.isoformat()}"


def clustering_engine(indexes: DatasetIndexes | None = None) -> Engine:
    """The engine every clustering and merging task runs (MinFaces comes per dataset, per call); with
    ``indexes`` its states keep their vectors in Milvus, else in memory."""
    if indexes is None:
        return Engine(ClusteringConfig(), id_factory=cluster_object_id)
    return Engine(ClusteringConfig(), id_factory=cluster_object_id, index_factory=indexes)


def load_state(
    engine: Engine, blob: bytes | None, salt: str, session: Session, indexes: DatasetIndexes | None = None
) -> ClusterState:
    """The dataset's saved state, or a new one when it has none yet.

    The blob holds no vectors (issue 15). With ``indexes`` (the engine's Milvus index factory) the state's
    index is the dataset's vectors in Milvus: the rows are attached without moving any vector, and faces
    Milvus lacks (drift) are written back from the store. Without, the in-memory index is refilled from the
    embeddings the store keeps on each face row. A blob saved with a faiss index inside loads the same way."""
    state = engine.new_state(salt) if blob is None else engine.load_state(blob)
    if indexes is not None:
        indexes.bind(state)
    if blob is None:
        return state
    if isinstance(state.index, MilvusIndex):
        rows, keys = state.indexed_rows()
        missing = state.index.attach(rows, keys)
        if missing:
            restored = stored_embeddings(session, missing)
            state.index.store.upsert(
                state.index.collection, state.index.dataset_id, missing, normalise(restored)
            )
            state.index.written += len(missing)
    else:
        state.fill_index(lambda face_ids: stored_embeddings(session, face_ids))
    return state


def stored_embeddings(session: Session, face_ids: list[FaceId]) -> np.ndarray:
    """The embeddings of these face rows, in order, as the clustering task handed them to the engine.
    ValueError when one is missing (the state and the store disagree: re-cluster the dataset)."""
    found: dict[int, np.ndarray] = {}
    for lo in range(0, len(face_ids), _FACES_PER_QUERY):
        part = face_ids[lo : lo + _FACES_PER_QUERY]
        rows = session.execute(
            select(Figure.id, Figure.embedding, Figure.embedding_dim).where(Figure.id.in_(part))
        )
        for pk, blob, dim in rows:
            if blob is not None and len(blob) == dim * EMBEDDING_DTYPE.itemsize:
                found[pk] = np.frombuffer(blob, dtype=EMBEDDING_DTYPE).astype(np.float32)
    missing = [f for f in face_ids if f not in found]
    if missing:
        raise ValueError(f"the clustering state holds faces the store has no embedding for: {missing[:5]}")
    return np.stack([found[f] for f in face_ids]) if face_ids else np.zeros((0, 0), np.float32)
