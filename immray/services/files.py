"""File metadata: read it (GetFileMeta, BatchGetFileMeta), correct it (UpdateFileMeta), forget it
(DeleteFileMeta, BatchDeleteFileMeta). Indexing, which creates it, is ``services.indexing``.

Faces and clustering. Deleting a file's metadata never touches the photo: its faces become tombstones
(``deleted_at`` and a new change number, ``file_id`` cleared) that the next clustering task takes out of
their clusters, and whose vectors that task deletes from Milvus (the engine reads them to take the faces
out). UpdateFileMeta's ``Figures`` record a user correction as a constraint on the face, applied
by the next clustering task (until then GetFileMeta shows the face where it was):

- into a cluster: ``pinned_cluster_id`` = that cluster (taken out of ``excluded_cluster_ids`` if listed);
- out of its cluster (``figure-cluster-id-independent`` or ``-unavailable``): ``pinned_cluster_id`` cleared,
  the cluster it is in (and the one it was pinned to) added to ``excluded_cluster_ids``;

either way the face gets a new ``change_seq``, so the clustering task sees it among the changes and passes
it to the engine as a ``Move``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from immray.protocol.errors import ImmError
from immray.services.database import Database
from immray.services.datasets import find_dataset
from immray.services.file_views import FileView, file_views
from immray.services.input_files import InputFile
from immray.store import (
    INDEPENDENT_CLUSTER_ID,
    UNAVAILABLE_CLUSTER_ID,
    Dataset,
    Figure,
    FigureCluster,
    File,
    ObjectStatus,
    next_change_seq,
    utcnow,
)

#: FigureClusterId values that mean "out of any cluster" in UpdateFileMeta.
OUT_OF_CLUSTER = (INDEPENDENT_CLUSTER_ID, UNAVAILABLE_CLUSTER_ID)


# --- reading ------------------------------------------------------------------------------------


def get_file(db: Database, project: str, dataset: str, uri: str) -> FileView:
    """GetFileMeta: the file indexed under ``uri``, or ResourceNotFound."""
    found = batch_get_files(db, project, dataset, [uri])
    if not found:
        raise ImmError.resource_not_found("file", uri)
    return found[0]


def batch_get_files(db: Database, project: str, dataset: str, uris: Sequence[str]) -> list[FileView]:
    """BatchGetFileMeta: the files of ``uris`` that are indexed, in the order asked (others are left out)."""
    with db.read() as session:
        row = find_dataset(session, project, dataset)
        files = session.scalars(select(File).where(File.dataset_id == row.id, File.uri.in_(set(uris)))).all()
        views = {view.uri: view for view in file_views(session, files, project, dataset)}
    return [views[uri] for uri in dict.fromkeys(uris) if uri in views]


# --- updating -----------------------------------------------------------------------------------


def update_file(db: Database, project: str, dataset: str, given: InputFile) -> None:
    """UpdateFileMeta: CustomId, CustomLabels and the other metadata given; ``Figures`` move faces."""
    with db.write() as session:
        dataset_row = find_dataset(session, project, dataset, for_update=True)
        row = session.scalar(select(File).where(File.dataset_id == dataset_row.id, File.uri == given.uri))
        if row is None:
            raise ImmError.resource_not_found("file", given.uri)
        given.apply_metadata(row)
        if given.figures:
            _move_faces(session, dataset_row, row, given.figures)


def _move_faces(session: Session, dataset: Dataset, file: File, moves: Sequence[Mapping[str, Any]]) -> None:
    figures = {
        figure.figure_id: figure
        for figure in session.scalars(
            select(Figure).where(Figure.file_id == file.id, Figure.deleted_at.is_(None))
        )
    }
    wanted = {move["FigureClusterId"] for move in moves} - set(OUT_OF_CLUSTER)
    clusters = {
        cluster.object_id: cluster
        for cluster in session.scalars(
            select(FigureCluster).where(
                FigureCluster.dataset_id == dataset.id, FigureCluster.object_id.in_(wanted)
            )
        )
    }
    for move in moves:
        if move["FigureId"] not in figures:
            raise ImmError.resource_not_found("figure", f"{move['FigureId']} of {file.uri}")
        if move["FigureClusterId"] not in OUT_OF_CLUSTER and move["FigureClusterId"] not in clusters:
            raise ImmError.resource_not_found("figure cluster", move["FigureClusterId"])
    current = {
        cluster_id: object_id
        for cluster_id, object_id in session.execute(
            select(FigureCluster.id, FigureCluster.object_id).where(
                FigureCluster.id.in_(
                    {f.cluster_id for f in figures.values() if f.cluster_id is not None}
                    | {f.pinned_cluster_id for f in figures.values() if f.pinned_cluster_id is not None}
                )
            )
        )
    }
    seq = next_change_seq(session, dataset.id)
    for move in moves:
        figure = figures[move["FigureId"]]
        excluded = list(figure.excluded_cluster_ids or [])
        target = move["FigureClusterId"]
        if target in OUT_OF_CLUSTER:
            for cluster_id in (figure.cluster_id, figure.pinned_cluster_id):
                object_id = current.get(cluster_id) if cluster_id is not None else None
                if object_id is not None and object_id not in excluded:
                    excluded.append(object_id)
            figure.pinned_cluster_id = None
        else:
            figure.pinned_cluster_id = clusters[target].id
            excluded = [object_id for object_id in excluded if object_id != target]
        figure.excluded_cluster_ids = excluded or None
        figure.change_seq = seq


# --- deleting -----------------------------------------------------------------------------------


def delete_files(db: Database, project: str, dataset: str, uris: Sequence[str], *, must_exist: bool) -> int:
    """Forget the metadata of ``uris`` (the photos are untouched); their faces become tombstones for the
    next clustering task. ``must_exist``: ResourceNotFound if none of them is indexed (DeleteFileMeta)."""
    from immray.services.indexing import complete_events

    with db.write() as session:
        dataset_row = find_dataset(session, project, dataset, for_update=True)
        rows = session.execute(
            select(File.id, File.object_status, File.event_id).where(
                File.dataset_id == dataset_row.id, File.uri.in_(set(uris))
            )
        ).all()
        if not rows:
            if must_exist:
                raise ImmError.resource_not_found(
                    "file", uris[0] if len(uris) == 1 else ", ".join(uris)[:256]
                )
            return 0
        ids = [row.id for row in rows]
        tombstone_figures(session, dataset_row.id, ids)
        session.execute(
            delete(File).where(File.id.in_(ids)), execution_options={"synchronize_session": False}
        )
        # A request whose last pending file is deleted is complete: its notification goes now.
        complete_events(
            session, dataset_row, {r.event_id for r in rows if r.object_status == ObjectStatus.PENDING}
        )
        return len(ids)


def tombstone_figures(session: Session, dataset_id: int, file_ids: Sequence[int]) -> int:
    """Stamp the live faces of ``file_ids`` deleted (time, new change number, no file) so the next
    clustering task removes them from their clusters; returns how many."""
    live = select(Figure.id).where(Figure.file_id.in_(file_ids), Figure.deleted_at.is_(None))
    if session.scalar(live.limit(1)) is None:
        return 0
    seq = next_change_seq(session, dataset_id)
    result = session.execute(
        update(Figure)
        .where(Figure.file_id.in_(file_ids), Figure.deleted_at.is_(None))
        .values(deleted_at=utcnow(), change_seq=seq, file_id=None),
        execution_options={"synchronize_session": False},
    )
    return result.rowcount or 0
