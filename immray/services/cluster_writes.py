"""Writing what the engine decided into the store: face assignments, cluster rows, counts and covers.

A task may run the engine more than once (see ``clustering_change``); :class:`Outcome` folds those results
into the one set of writes the task commits. :func:`write_outcome` makes them inside the caller's
transaction, so the assignments, the clusters, the saved state, the task's end and its notification are one
commit. Counts are counted from the face rows the task leaves (not copied from the engine), so FaceCount and
ImageCount always say what GetFileMeta and SimpleQuery show. A cover the user chose stays while its face is
still in the cluster; otherwise the cover is the engine's pick, the cluster's best-quality face.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from immray.clustering import ClusterOutcome, ClusterState, FaceOutcome, Result
from immray.store import ClusterState as FaceClusterState
from immray.store import Figure, FigureCluster, utcnow

CHUNK = 500
T = TypeVar("T")


def chunks(items: Sequence[T], size: int = CHUNK) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


@dataclass
class Outcome:
    """The engine's results of one task, folded: later results override earlier ones face by face."""

    before: frozenset[str]  # live clusters before the task
    faces: dict[Any, FaceOutcome] = field(default_factory=dict)
    described: dict[str, ClusterOutcome] = field(default_factory=dict)
    touched: set[str] = field(default_factory=set)  # grew, shrank or survived a merge
    merges: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)
    removed_faces: int = 0
    # Filled by settle():
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    absorbed: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)

    @classmethod
    def starting_from(cls, state: ClusterState) -> Outcome:
        return cls(before=frozenset(state.code_of))

    def add(self, result: Result) -> None:
        for face in result.faces:
            self.faces[face.face_id] = face
        for cluster in result.clusters:
            self.described[cluster.cluster_id] = cluster
        self.touched.update(result.grown, result.shrunk)
        for merge in result.merged:
            self.touched.add(merge.survivor)
            self.merges.append((merge.survivor, merge.absorbed))
        self.removed_faces += result.removed_faces

    def settle(self, state: ClusterState) -> Outcome:
        """Work out, against the state after the last result, what was created, updated, merged, deleted."""
        after = set(state.code_of)
        gone = self.before - after
        absorbed = {a for _, group in self.merges for a in group}
        self.created = sorted(after - self.before)
        self.updated = sorted((self.touched | set(self.described)) & after & self.before)
        self.absorbed = sorted(gone & absorbed)
        self.deleted = sorted(gone - absorbed)
        self.faces = {fid: f for fid, f in self.faces.items() if fid in state}
        self.merges = [(s, tuple(a for a in group if a in gone)) for s, group in self.merges if s in after]
        return self

    @property
    def faces_assigned(self) -> int:
        return sum(1 for f in self.faces.values() if f.cluster_id is not None)

    def counts(self) -> dict[str, int]:
        """The figures a clustering notification adds to IMM's task message."""
        return {
            "ClustersCreated": len(self.created),
            "ClustersUpdated": len(self.updated),
            "ClustersMerged": len(self.absorbed),
            "ClustersDeleted": len(self.deleted),
            "FacesAssigned": self.faces_assigned,
            "FacesIndependent": len(self.faces) - self.faces_assigned,
            "FacesRemoved": self.removed_faces,
        }


def write_outcome(session: Session, dataset_id: int, outcome: Outcome, tombstones: Sequence[int]) -> None:
    """Apply a settled outcome to the dataset's rows and drop the tombstones the task took out."""
    now = utcnow()
    described = set(outcome.created) | set(outcome.updated)
    wanted = described | set(outcome.absorbed) | set(outcome.deleted)
    wanted |= {f.cluster_id for f in outcome.faces.values() if f.cluster_id is not None}
    rows = _cluster_rows(session, dataset_id, sorted(wanted))
    for cid in outcome.created:
        if cid not in rows:
            row = FigureCluster(object_id=cid, dataset_id=dataset_id, created_at=now, updated_at=now)
            session.add(row)
            rows[cid] = row
    session.flush()

    for survivor, group in outcome.merges:
        _carry_over(session, dataset_id, rows, survivor, group)

    updates = []
    for face in outcome.faces.values():
        inside = face.cluster_id is not None
        updates.append(
            {
                "id": face.face_id,
                "cluster_id": rows[face.cluster_id].id if inside else None,
                "cluster_state": FaceClusterState.CLUSTERED if inside else FaceClusterState.INDEPENDENT,
                "cluster_confidence": float(face.confidence) if inside else None,
                "updated_at": now,
            }
        )
    for part in chunks(updates):
        session.execute(update(Figure), list(part))

    gone = [rows[cid].id for cid in [*outcome.absorbed, *outcome.deleted] if cid in rows]
    for part in chunks(gone):
        session.execute(
            delete(FigureCluster).where(FigureCluster.id.in_(part)),
            execution_options={"synchronize_session": False},
        )
    for part in chunks(list(tombstones)):
        session.execute(
            delete(Figure).where(Figure.id.in_(part), Figure.deleted_at.is_not(None)),
            execution_options={"synchronize_session": False},
        )
    refresh_clusters(
        session,
        [rows[cid] for cid in sorted(described) if cid in rows],
        {cid: outcome.described[cid].cover_face_id for cid in described if cid in outcome.described},
        now=now,
    )


def refresh_clusters(
    session: Session, clusters: Sequence[FigureCluster], suggested: dict[str, Any], *, now=None
) -> None:
    """Count the faces and photos of ``clusters`` from their face rows and settle their covers.

    ``suggested`` is the engine's cover pick per cluster ObjectId; a user's cover wins while its face is in
    the cluster; without either, the cluster's best-quality face.
    """
    if not clusters:
        return
    now = now or utcnow()
    ids = [c.id for c in clusters]
    counts: dict[int, tuple[int, int]] = {}
    for part in chunks(ids):
        for cid, faces, images in session.execute(
            select(Figure.cluster_id, func.count(Figure.id), func.count(func.distinct(Figure.file_id)))
            .where(Figure.cluster_id.in_(part), Figure.deleted_at.is_(None))
            .group_by(Figure.cluster_id)
        ):
            counts[cid] = (faces, images)
    candidates = {c.cover_figure_id for c in clusters if c.cover_figure_id is not None}
    candidates |= {pk for pk in suggested.values() if isinstance(pk, int)}
    home = _homes(session, sorted(candidates))
    fallback_needed = []
    values = []
    for cluster in clusters:
        faces, images = counts.get(cluster.id, (0, 0))
        cover = cluster.cover_figure_id
        chosen = cluster.cover_chosen_by_user
        if cover is None or home.get(cover) != cluster.id:
            cover, chosen = None, False
        if not chosen:
            pick = suggested.get(cluster.object_id)
            cover = pick if home.get(pick) == cluster.id else cover
        if cover is None and faces:
            fallback_needed.append(cluster.id)
        values.append(
            {
                "id": cluster.id,
                "face_count": faces,
                "image_count": images,
                "cover_figure_id": cover,
                "cover_chosen_by_user": chosen,
                "updated_at": now,
            }
        )
    best = best_quality_faces(session, fallback_needed)
    for item in values:
        if item["cover_figure_id"] is None:
            item["cover_figure_id"] = best.get(item["id"])
    for part in chunks(values):
        session.execute(update(FigureCluster), list(part))
    session.expire_all()


def best_quality_faces(session: Session, cluster_ids: Iterable[int]) -> dict[int, int]:
    """Cluster id -> its live face of the highest FaceQuality (ties: the oldest face)."""
    best: dict[int, int] = {}
    for cluster_id in cluster_ids:
        pk = session.scalar(
            select(Figure.id)
            .where(Figure.cluster_id == cluster_id, Figure.deleted_at.is_(None))
            .order_by(Figure.quality.desc().nulls_last(), Figure.id)
            .limit(1)
        )
        if pk is not None:
            best[cluster_id] = pk
    return best


def _homes(session: Session, figure_pks: Sequence[int]) -> dict[int, int | None]:
    """Figure pk -> the cluster row it is in now (live faces only)."""
    home: dict[int, int | None] = {}
    for part in chunks(figure_pks):
        home.update(
            session.execute(
                select(Figure.id, Figure.cluster_id).where(Figure.id.in_(part), Figure.deleted_at.is_(None))
            ).all()
        )
    return home


def _cluster_rows(session: Session, dataset_id: int, object_ids: Sequence[str]) -> dict[str, FigureCluster]:
    rows: dict[str, FigureCluster] = {}
    for part in chunks(object_ids):
        for row in session.scalars(
            select(FigureCluster)
            .where(FigureCluster.dataset_id == dataset_id, FigureCluster.object_id.in_(part))
            .with_for_update()
        ):
            rows[row.object_id] = row
    return rows


def _carry_over(
    session: Session, dataset_id: int, rows: dict[str, FigureCluster], survivor: str, group: Sequence[str]
) -> None:
    """What the user gave the absorbed clusters moves to the survivor: a name when it has none, custom
    labels and id it lacks, and the faces the user pinned to them (or took out of them)."""
    target = rows.get(survivor)
    sources = [rows[cid] for cid in group if cid in rows]
    if target is None or not sources:
        return
    for source in sources:
        if not target.name and source.name:
            target.name = source.name
        if not target.custom_id and source.custom_id:
            target.custom_id = source.custom_id
        if source.custom_labels:
            target.custom_labels = {**source.custom_labels, **(target.custom_labels or {})}
    session.flush()
    source_pks = [s.id for s in sources]
    session.execute(
        update(Figure).where(Figure.pinned_cluster_id.in_(source_pks)).values(pinned_cluster_id=target.id),
        execution_options={"synchronize_session": False},
    )
    absorbed = {s.object_id for s in sources}
    for figure in session.scalars(
        select(Figure).where(Figure.dataset_id == dataset_id, Figure.excluded_cluster_ids.is_not(None))
    ):
        excluded = list(figure.excluded_cluster_ids or ())
        if absorbed & set(excluded):
            figure.excluded_cluster_ids = sorted({survivor if x in absorbed else x for x in excluded})
    session.flush()
