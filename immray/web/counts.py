"""Two counts the pages show and no IMM action answers: faces waiting for clustering, files by status.

Read-only aggregate queries of one dataset. The routes ask the policy first (as QueryFigureClusters and
SimpleQuery would be asked), so these add no way around access control.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select

from immray.services.database import Database
from immray.services.datasets import find_dataset
from immray.store import Figure, File
from immray.store.models import ClusterState


@dataclass(frozen=True)
class DatasetCounts:
    unassigned_faces: int  # not clustered yet (figure-cluster-id-unavailable)
    files_by_status: dict[str, int]


def dataset_counts(db: Database, project: str, dataset: str) -> DatasetCounts:
    with db.read() as session:
        row = find_dataset(session, project, dataset)
        unassigned = session.scalar(
            select(func.count(Figure.id)).where(
                Figure.dataset_id == row.id,
                Figure.deleted_at.is_(None),
                Figure.cluster_state == ClusterState.UNAVAILABLE.value,
            )
        )
        statuses = dict(
            session.execute(
                select(File.object_status, func.count(File.id))
                .where(File.dataset_id == row.id)
                .group_by(File.object_status)
            ).all()
        )
    return DatasetCounts(int(unassigned or 0), {str(k): int(v) for k, v in statuses.items()})
