"""Files and their faces as the use cases hand them out: plain values, read in a few queries.

GetFileMeta-like answers (SimpleQuery's files, a cluster's Cover) need a file with its faces and each
face's FigureClusterId; :func:`file_views` reads them for a whole page at once (one query for the files,
one for their faces with their clusters' ObjectIds), never one query per row.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from immray.store import (
    INDEPENDENT_CLUSTER_ID,
    UNAVAILABLE_CLUSTER_ID,
    ClusterState,
    Figure,
    FigureCluster,
    File,
)


@dataclass(frozen=True)
class FigureView:
    figure_id: str
    figure_type: str
    left: int
    top: int
    width: int
    height: int
    confidence: float | None
    quality: float | None
    sharpness: float | None
    yaw: float | None
    pitch: float | None
    roll: float | None
    figure_cluster_id: str
    cluster_confidence: float | None
    attributes: dict[str, Any] | None


@dataclass(frozen=True)
class FileView:
    pk: int
    uri: str
    object_id: str
    project_name: str
    dataset_name: str
    custom_id: str | None
    custom_labels: dict[str, Any] | None
    media_type: str | None
    content_type: str | None
    filename: str | None
    size: int | None
    etag: str | None
    image_width: int | None
    image_height: int | None
    orientation: int | None
    object_status: str
    reason: str | None
    figure_count: int | None
    attributes: dict[str, Any] | None
    file_modified_at: datetime | None
    produced_at: datetime | None
    created_at: datetime
    updated_at: datetime
    figures: tuple[FigureView, ...]


def figure_cluster_id(cluster_object_id: str | None, state: str) -> str:
    """FigureClusterId as IMM shows it: the cluster's ObjectId or one of the two reserved values."""
    if cluster_object_id is not None:
        return cluster_object_id
    return INDEPENDENT_CLUSTER_ID if state == ClusterState.INDEPENDENT else UNAVAILABLE_CLUSTER_ID


def figure_views(
    session: Session, file_pks: Iterable[int], *, only: Iterable[int] | None = None
) -> dict[int, list[FigureView]]:
    """File pk -> its live faces (top to bottom, left to right); ``only`` keeps just those figure pks."""
    pks = sorted(set(file_pks))
    found: dict[int, list[FigureView]] = {pk: [] for pk in pks}
    if not pks:
        return found
    stmt = (
        select(Figure, FigureCluster.object_id)
        .outerjoin(FigureCluster, FigureCluster.id == Figure.cluster_id)
        .where(Figure.file_id.in_(pks), Figure.deleted_at.is_(None))
        .order_by(Figure.file_id, Figure.top, Figure.left, Figure.id)
    )
    if only is not None:
        stmt = stmt.where(Figure.id.in_(sorted(set(only))))
    for figure, cluster in session.execute(stmt):
        found[figure.file_id].append(
            FigureView(
                figure_id=figure.figure_id,
                figure_type=figure.figure_type,
                left=figure.left,
                top=figure.top,
                width=figure.width,
                height=figure.height,
                confidence=figure.confidence,
                quality=figure.quality,
                sharpness=figure.sharpness,
                yaw=figure.yaw,
                pitch=figure.pitch,
                roll=figure.roll,
                figure_cluster_id=figure_cluster_id(cluster, figure.cluster_state),
                cluster_confidence=figure.cluster_confidence,
                attributes=figure.attributes,
            )
        )
    return found


def file_views(
    session: Session,
    files: Sequence[File],
    project_name: str,
    dataset_name: str,
    *,
    only_figures: Iterable[int] | None = None,
) -> list[FileView]:
    """Views of ``files`` (in the order given) with their faces (or just ``only_figures``)."""
    figures = figure_views(session, (f.id for f in files), only=only_figures)
    return [
        FileView(
            pk=f.id,
            uri=f.uri,
            object_id=f.object_id,
            project_name=project_name,
            dataset_name=dataset_name,
            custom_id=f.custom_id,
            custom_labels=f.custom_labels,
            media_type=f.media_type,
            content_type=f.content_type,
            filename=f.filename,
            size=f.size,
            etag=f.etag,
            image_width=f.image_width,
            image_height=f.image_height,
            orientation=f.orientation,
            object_status=f.object_status,
            reason=f.reason,
            figure_count=f.figure_count,
            attributes=f.attributes,
            file_modified_at=f.file_modified_at,
            produced_at=f.produced_at,
            created_at=f.created_at,
            updated_at=f.updated_at,
            figures=tuple(figures.get(f.id, ())),
        )
        for f in files
    ]
