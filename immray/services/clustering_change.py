"""What a clustering task has to do: the faces changed since the last task, turned into engine changes.

Every face that was added, moved by the user or removed carries a change number above the one the saved
state reflects (``ClusteringState.clustered_seq``), so the task reads exactly those rows, with the
embeddings of the faces the state does not hold yet; the state blob holds every other face. A face the
state holds comes back only when the user moved it (``pinned_cluster_id`` / ``excluded_cluster_ids`` on its
row), when its file was re-analysed (it is ``unavailable`` again) or when it was deleted (a tombstone).

The engine takes one :class:`Change` at a time and checks it whole, so what cannot go in one change goes
in the next: a re-analysed face is removed, then added again; a face the user moved before it was ever
clustered is added, then moved.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from sqlalchemy import case, select
from sqlalchemy.orm import Session, aliased

from immray.clustering import Change, ClusterState, Move, NewFace
from immray.services import workflow_parameters
from immray.store import ClusteringState, Dataset, Figure, FigureCluster
from immray.store import ClusterState as FaceClusterState
from immray.store.types import EMBEDDING_DTYPE


@dataclass(frozen=True)
class PendingFigure:
    """One changed face row. ``embedding`` is None for tombstones."""

    pk: int
    file_pk: int | None
    quality: float
    embedding: np.ndarray | None
    model: str
    deleted: bool
    cluster_state: str
    pinned: str | None  # ObjectId of the cluster the user put this face in
    excluded: tuple[str, ...]  # ObjectIds of the clusters the user took it out of

    @property
    def constrained(self) -> bool:
        return self.pinned is not None or bool(self.excluded)


@dataclass
class PendingChange:
    """Everything a task reads before it runs the engine: the saved state and the change since it."""

    dataset_id: int
    min_faces: int
    created_at: object
    since: int  # the saved state reflects every change numbered up to this
    upto: int  # this task takes every change numbered up to this
    state_blob: bytes | None
    state_version: int | None
    embedding_model: str | None
    figures: list[PendingFigure] = field(default_factory=list)
    names: dict[str, str] = field(default_factory=dict)  # cluster ObjectId -> Name ("" = none)

    @property
    def tombstones(self) -> list[int]:
        return [f.pk for f in self.figures if f.deleted]


def read_pending(session: Session, dataset_id: int) -> PendingChange:
    """The dataset's saved state and its changed faces, read in one (read-only) transaction."""
    dataset = session.get(Dataset, dataset_id)
    if dataset is None:
        raise LookupError(f"no dataset with id {dataset_id}")
    saved = session.get(ClusteringState, dataset_id)
    since = saved.clustered_seq if saved is not None else 0
    pending = PendingChange(
        dataset_id=dataset_id,
        min_faces=workflow_parameters.setting(dataset.workflow_parameters, "FigureClusterMinFaces"),
        created_at=dataset.created_at,
        since=since,
        upto=dataset.change_seq,
        state_blob=saved.state if saved is not None else None,
        state_version=saved.version if saved is not None else None,
        embedding_model=saved.embedding_model if saved is not None else None,
    )
    pinned = aliased(FigureCluster)
    alive = Figure.deleted_at.is_(None)
    rows = session.execute(
        select(
            Figure.id,
            Figure.file_id,
            Figure.quality,
            case((alive, Figure.embedding), else_=None),
            Figure.embedding_model,
            Figure.embedding_dim,
            Figure.deleted_at.is_not(None),
            Figure.cluster_state,
            pinned.object_id,
            Figure.excluded_cluster_ids,
        )
        .outerjoin(pinned, pinned.id == Figure.pinned_cluster_id)
        .where(
            Figure.dataset_id == dataset_id,
            Figure.change_seq > since,
            Figure.change_seq <= pending.upto,
        )
        .order_by(Figure.id)
    )
    for pk, file_pk, quality, blob, model, dim, deleted, state, pin, excluded in rows:
        vector = None
        if blob is not None and len(blob) == dim * EMBEDDING_DTYPE.itemsize:
            vector = np.frombuffer(blob, dtype=EMBEDDING_DTYPE).astype(np.float32)
        pending.figures.append(
            PendingFigure(
                pk=pk,
                file_pk=file_pk,
                quality=min(1.0, max(0.0, float(quality or 0.0))),
                embedding=vector,
                model=model,
                deleted=bool(deleted),
                cluster_state=state,
                pinned=pin,
                excluded=tuple(x for x in excluded or () if isinstance(x, str)),
            )
        )
    pending.names = dict(
        session.execute(
            select(FigureCluster.object_id, FigureCluster.name).where(FigureCluster.dataset_id == dataset_id)
        ).all()
    )
    return pending


@dataclass(frozen=True)
class Plan:
    """The engine changes of one task, in order, and the faces it leaves unclustered (another model)."""

    first: Change
    readded: Change | None
    later_moves: list[PendingFigure]  # faces to move once the engine holds them
    skipped: int
    model: str | None


def plan_changes(state: ClusterState, pending: PendingChange) -> Plan:
    """Split the pending change into what the engine can take now and what must follow."""
    model = pending.embedding_model or _first_model(pending.figures)
    removed: list[int] = []
    moves: list[Move] = []
    added: list[NewFace] = []
    readded: list[NewFace] = []
    later: list[PendingFigure] = []
    skipped = 0
    for face in pending.figures:
        known = face.pk in state
        if face.deleted:
            if known:
                removed.append(face.pk)
            continue
        reanalysed = known and face.cluster_state == FaceClusterState.UNAVAILABLE
        if known and not reanalysed:
            move = move_for(face, state.cluster_of(face.pk))
            if move is not None:
                moves.append(move)
            continue
        if face.embedding is None or face.file_pk is None or face.model != model:
            skipped += 1  # another model's embeddings do not compare with the state's
            if reanalysed:
                removed.append(face.pk)
            continue
        new = NewFace(face.pk, face.embedding, face.file_pk, face.quality)
        if reanalysed:
            removed.append(face.pk)
            readded.append(new)
        else:
            added.append(new)
        if face.constrained:
            later.append(face)
    live = set(state.code_of)
    renamed = {
        cid: (name or None)
        for cid, name in sorted(pending.names.items())
        if cid in live and state.name_of(cid) != (name or None)
    }
    first = Change(added=added, removed=removed, moved=moves, renamed=renamed)
    return Plan(first, Change(added=readded) if readded else None, later, skipped, model)


def move_for(face: PendingFigure, current: str | None) -> Move | None:
    """The user's constraint on a face the engine holds, as a Move (None: nothing to enforce)."""
    if face.pinned is not None:
        return Move(face.pk, face.pinned)
    if current is not None and current in face.excluded:
        return Move(face.pk, None)
    return None


def later_moves(state: ClusterState, faces: Sequence[PendingFigure]) -> Change | None:
    """Moves of faces the engine took in this task, once it holds them (their current cluster known)."""
    moves = [m for f in faces if f.pk in state and (m := move_for(f, state.cluster_of(f.pk))) is not None]
    return Change(moved=moves) if moves else None


def _first_model(figures: Sequence[PendingFigure]) -> str | None:
    """A new state takes the model most of its first faces were embedded with."""
    models = Counter(f.model for f in figures if not f.deleted and f.embedding is not None)
    return models.most_common(1)[0][0] if models else None
