"""Datasets: the unit faces are clustered in. Create, read, list, update, delete (with all they hold)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from immray import vectors
from immray.protocol.errors import ImmError
from immray.services import workflow_parameters
from immray.services.database import Database
from immray.services.listing import Listing, list_page
from immray.services.projects import DatasetLimits, find_project
from immray.store import Binding, Dataset, File, SortKey, starts_with, utcnow
from immray.vectors import sync as vector_sync


@dataclass(frozen=True)
class DatasetChanges:
    """CreateDataset/UpdateDataset input; None = not given (the project's default on create, unchanged on
    update). ``workflow_parameters`` were checked by ``workflow_parameters.validate`` and replace the list."""

    description: str | None = None
    template_id: str | None = None
    limits: DatasetLimits = field(default_factory=DatasetLimits)
    workflow_parameters: Sequence[dict[str, str]] | None = None


@dataclass(frozen=True)
class DatasetStatistics:
    file_count: int
    total_file_size: int
    bind_count: int


@dataclass(frozen=True)
class DatasetInfo:
    project_name: str
    name: str
    description: str | None
    template_id: str | None
    limits: DatasetLimits
    workflow_parameters: list[dict[str, str]]  # every known parameter, value in force
    created_at: datetime
    updated_at: datetime
    statistics: DatasetStatistics | None = None


def _info(row: Dataset, project_name: str, statistics: DatasetStatistics | None = None) -> DatasetInfo:
    return DatasetInfo(
        project_name=project_name,
        name=row.name,
        description=row.description,
        template_id=row.template_id,
        limits=DatasetLimits(**{f.name: getattr(row, f.name) for f in fields(DatasetLimits)}),
        workflow_parameters=workflow_parameters.in_force(row.workflow_parameters),
        created_at=row.created_at,
        updated_at=row.updated_at,
        statistics=statistics,
    )


def _apply(row: Dataset, changes: DatasetChanges) -> None:
    for name in ("description", "template_id"):
        value = getattr(changes, name)
        if value is not None:
            setattr(row, name, value)
    for limit in fields(DatasetLimits):
        value = getattr(changes.limits, limit.name)
        if value is not None:
            setattr(row, limit.name, value)
    if changes.workflow_parameters is not None:
        row.workflow_parameters = [dict(item) for item in changes.workflow_parameters]


def find_dataset(session: Session, project: str, name: str, *, for_update: bool = False) -> Dataset:
    """The dataset ``project/name``; ResourceNotFound names which of the two is missing."""
    project_row = find_project(session, project)
    stmt = select(Dataset).where(Dataset.project_id == project_row.id, Dataset.name == name)
    if for_update:
        stmt = stmt.with_for_update()
    row = session.scalar(stmt)
    if row is None:
        raise ImmError.resource_not_found("dataset", f"{project}/{name}")
    return row


def create_dataset(db: Database, project: str, name: str, changes: DatasetChanges) -> DatasetInfo:
    try:
        with db.write() as session:
            # The project row is locked so concurrent creations count datasets one after the other.
            project_row = find_project(session, project, for_update=True)
            taken = session.scalar(
                select(Dataset.id).where(Dataset.project_id == project_row.id, Dataset.name == name)
            )
            if taken is not None:
                raise ImmError.resource_already_exists("dataset", f"{project}/{name}")
            count = session.scalar(select(func.count()).where(Dataset.project_id == project_row.id)) or 0
            maximum = project_row.project_max_dataset_count
            if maximum is not None and count >= maximum:
                raise ImmError.limit_exceeded(
                    f"The project {project} already holds {count} datasets, its ProjectMaxDatasetCount; "
                    "raise it with UpdateProject or delete a dataset."
                )
            now = utcnow()  # UpdateTime equals CreateTime until the first update
            row = Dataset(
                project_id=project_row.id,
                created_at=now,
                updated_at=now,
                name=name,
                workflow_parameters=[],
                **{f.name: getattr(project_row, f.name) for f in fields(DatasetLimits)},
            )
            _apply(row, changes)
            session.add(row)
            session.flush()
            return _info(row, project)
    except IntegrityError:  # created concurrently, or its project deleted meanwhile
        with db.read() as session:
            find_project(session, project)
        raise ImmError.resource_already_exists("dataset", f"{project}/{name}") from None


def get_dataset(db: Database, project: str, name: str, *, with_statistics: bool = False) -> DatasetInfo:
    with db.read() as session:
        row = find_dataset(session, project, name)
        return _info(row, project, dataset_statistics(session, row.id) if with_statistics else None)


def dataset_statistics(session: Session, dataset_id: int) -> DatasetStatistics:
    files, size = session.execute(
        select(func.count(File.id), func.coalesce(func.sum(File.size), 0)).where(
            File.dataset_id == dataset_id
        )
    ).one()
    bindings = session.scalar(select(func.count()).where(Binding.dataset_id == dataset_id)) or 0
    return DatasetStatistics(files or 0, int(size or 0), bindings)


def list_datasets(
    db: Database,
    project: str,
    *,
    limit: int,
    token: str = "",
    prefix: str = "",
    visible: Callable[[str], bool] | None = None,
) -> Listing[DatasetInfo]:
    """The project's datasets by name; ``visible(name)`` keeps those the caller may see (None: all)."""
    with db.read() as session:
        project_row = find_project(session, project)
        stmt = select(Dataset).where(Dataset.project_id == project_row.id)
        if prefix:
            stmt = stmt.where(starts_with(Dataset.name, prefix))
        key = SortKey("DatasetName", Dataset.name, Dataset.id)
        keep = None if visible is None else (lambda row: visible(row.name))
        page = list_page(session, stmt, key, limit=limit, token=token, keep=keep)
        return Listing([_info(row, project) for row in page.items], page.next_token)


def update_dataset(db: Database, project: str, name: str, changes: DatasetChanges) -> DatasetInfo:
    with db.write() as session:
        row = find_dataset(session, project, name, for_update=True)
        _apply(row, changes)
        session.flush()
        return _info(row, project)


def delete_dataset(db: Database, project: str, name: str) -> None:
    """Delete a dataset and everything it holds: its files' metadata, faces, clusters, clustering state,
    bindings and tasks (the database cascades, in this one transaction). Source files are never touched.

    Its vectors leave Milvus first: with Milvus unreachable the request answers ServiceUnavailable and the
    dataset stays whole, instead of leaving vectors no dataset owns. Again after the commit, for any that
    an analysis finishing meanwhile wrote (logged on failure; ``vectors check`` reports what is left)."""
    store = vectors.for_db(db)
    if store is not None:
        with db.read() as session:
            dataset_id = find_dataset(session, project, name).id
        store.delete_dataset(dataset_id)  # VectorStoreUnavailable: an IMM error, nothing deleted
    with db.write() as session:
        row = find_dataset(session, project, name, for_update=True)
        session.execute(
            delete(Dataset).where(Dataset.id == row.id), execution_options={"synchronize_session": False}
        )
        dataset_id = row.id
    vector_sync.delete_dataset(store, dataset_id)
