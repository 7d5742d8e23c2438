"""The store (SQL) is the record; Milvus follows it. The writes the services make after their commits, and
the drift check and rebuild of ``immray vectors``.

A face's vector is written after the SQL commit that stored the face, under the face's key (an idempotent
upsert). A crash between the two leaves the face in SQL only: the next clustering task takes it (it is a
new change) and ``MilvusIndex.add`` upserts what Milvus lacks. Tombstoned faces' vectors are deleted after
the commit that deleted them, and again by the task that takes the tombstones (idempotent). Writes that
fail (Milvus unreachable) are logged, not raised: the request that stored the faces has succeeded.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
from sqlalchemy import select

from immray.clustering.neighbours import BadEmbedding, normalise
from immray.store import Dataset, Figure
from immray.store.types import EMBEDDING_DTYPE
from immray.vectors.store import FaceVectors

log = logging.getLogger("immray.vectors")

_SQL_BATCH = 5_000


@dataclass(frozen=True)
class FaceVector:
    key: int
    dataset_id: int
    model: str
    raw: np.ndarray  # the embedding as stored in SQL


def write_faces(store: FaceVectors | None, faces: Sequence[FaceVector]) -> int:
    """Upsert the normalised vectors of ``faces`` (grouped by model); returns how many were written.
    Failures are logged (the next clustering task repairs them)."""
    if store is None or not faces:
        return 0
    groups: dict[tuple[str, int, int], list[FaceVector]] = defaultdict(list)
    for face in faces:
        groups[(face.model, len(face.raw), face.dataset_id)].append(face)
    written = 0
    try:
        for (model, dim, dataset_id), group in groups.items():
            keys, vectors = _normalised(group)
            if keys:
                store.upsert(store.collection(model, dim), dataset_id, keys, vectors)
                written += len(keys)
    except Exception:
        log.exception(
            "writing %d face vector(s) to Milvus failed; the next clustering task repairs it", len(faces)
        )
    return written


def delete_faces(store: FaceVectors | None, keys: Iterable[int]) -> None:
    """Delete faces' vectors (logged on failure: ``vectors check`` reports what is left)."""
    keys = list(keys)
    if store is None or not keys:
        return
    try:
        store.delete_keys(keys)
    except Exception:
        log.exception("deleting %d face vector(s) from Milvus failed", len(keys))


def delete_dataset(store: FaceVectors | None, dataset_id: int) -> None:
    if store is None:
        return
    try:
        store.delete_dataset(dataset_id)
    except Exception:
        log.exception("deleting the vectors of dataset %s from Milvus failed", dataset_id)


def _normalised(group: Sequence[FaceVector]) -> tuple[list[int], np.ndarray]:
    keys, rows = [], []
    for face in group:
        try:
            rows.append(normalise(face.raw[None, :])[0])
            keys.append(face.key)
        except BadEmbedding:
            log.warning("face %s has a zero or non-finite embedding: not stored in Milvus", face.key)
    return keys, (np.stack(rows) if rows else np.zeros((0, 0), np.float32))


def stored_faces(session, dataset_id: int, keys: Sequence[int] | None = None) -> Iterable[FaceVector]:
    """The live faces of a dataset (or those of ``keys``) with their embeddings, from SQL, in batches."""
    query = select(
        Figure.id, Figure.dataset_id, Figure.embedding_model, Figure.embedding, Figure.embedding_dim
    )
    query = query.where(Figure.dataset_id == dataset_id, Figure.deleted_at.is_(None))
    parts = [None] if keys is None else [keys[lo : lo + _SQL_BATCH] for lo in range(0, len(keys), _SQL_BATCH)]
    for part in parts:
        q = query if part is None else query.where(Figure.id.in_(list(part)))
        for key, ds, model, blob, dim in session.execute(q.order_by(Figure.id)).yield_per(_SQL_BATCH):
            if blob is not None and dim and len(blob) == dim * EMBEDDING_DTYPE.itemsize:
                yield FaceVector(key, ds, model, np.frombuffer(blob, EMBEDDING_DTYPE).astype(np.float32))


# --- drift ---------------------------------------------------------------------------------------


@dataclass
class Drift:
    """How one dataset's vectors in Milvus differ from its faces in SQL."""

    dataset_id: int
    name: str
    faces: int = 0  # live faces with an embedding in SQL
    vectors: int = 0  # vectors in Milvus
    missing: list[int] = field(default_factory=list)  # in SQL, not in Milvus
    stale: list[int] = field(default_factory=list)  # in both, another vector
    orphans: list[int] = field(default_factory=list)  # in Milvus, not (alive) in SQL

    @property
    def clean(self) -> bool:
        return not (self.missing or self.stale or self.orphans)


def check(db, store: FaceVectors, *, compare_vectors: bool = True) -> list[Drift]:
    """The drift of every dataset, and of vectors whose dataset is gone (``dataset_id`` -1 rows: one per
    dataset id that Milvus holds and SQL does not)."""
    with db.read() as session:
        datasets = session.execute(select(Dataset.id, Dataset.name)).all()
    reports = [check_dataset(db, store, ds, name, compare_vectors=compare_vectors) for ds, name in datasets]
    known = {ds for ds, _ in datasets}
    for ds in sorted(_dataset_ids(store) - known):
        held = store.keys(ds)
        orphans = sorted(set().union(*held.values())) if held else []
        reports.append(Drift(ds, "(deleted)", vectors=len(orphans), orphans=orphans))
    return reports


def check_dataset(
    db, store: FaceVectors, dataset_id: int, name: str = "", *, compare_vectors: bool = True
) -> Drift:
    drift = Drift(dataset_id, name)
    held = store.keys(dataset_id)
    everywhere = set().union(*held.values()) if held else set()
    drift.vectors = sum(len(v) for v in held.values())
    seen: set[int] = set()
    with db.read() as session:
        by_collection: dict[str, list[FaceVector]] = defaultdict(list)
        for face in stored_faces(session, dataset_id):
            drift.faces += 1
            seen.add(face.key)
            name_ = store.collection(face.model, len(face.raw))
            if face.key not in held.get(name_, ()):
                drift.missing.append(face.key)
            elif compare_vectors:
                by_collection[name_].append(face)
    for collection, faces in by_collection.items():
        for lo in range(0, len(faces), _SQL_BATCH):
            part = faces[lo : lo + _SQL_BATCH]
            keys, vectors = _normalised(part)
            got = store.get(collection, keys, missing_ok=True)
            drift.stale.extend(
                k for k, v in zip(keys, vectors, strict=True) if not np.array_equal(got.get(k), v)
            )
    drift.orphans = sorted(everywhere - seen)
    return drift


def rebuild(db, store: FaceVectors, dataset_id: int) -> tuple[int, int]:
    """Make a dataset's vectors equal its faces in SQL: delete what is there, write every live face's.
    Returns (deleted, written)."""
    before = store.count(dataset_id)
    store.delete_dataset(dataset_id)
    written = 0
    with db.read() as session:
        batch: list[FaceVector] = []
        for face in stored_faces(session, dataset_id):
            batch.append(face)
            if len(batch) >= _SQL_BATCH:
                written += _write_or_raise(store, batch)
                batch = []
        written += _write_or_raise(store, batch)
    return before, written


def _write_or_raise(store: FaceVectors, faces: Sequence[FaceVector]) -> int:
    groups: dict[tuple[str, int], list[FaceVector]] = defaultdict(list)
    for face in faces:
        groups[(face.model, len(face.raw))].append(face)
    written = 0
    for (model, dim), group in groups.items():
        keys, vectors = _normalised(group)
        if keys:
            store.upsert(store.collection(model, dim), group[0].dataset_id, keys, vectors)
            written += len(keys)
    return written


def _dataset_ids(store: FaceVectors) -> set[int]:
    """Every dataset id that has vectors (a scan of the dataset_id field)."""
    found: set[int] = set()
    for name in store.collections():
        found.update(int(r["dataset_id"]) for r in store.scan(name, "", ["dataset_id"]))
    return found
