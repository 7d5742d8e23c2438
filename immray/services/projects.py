"""Projects: create, read, list, update and delete them, with IMM's defaults, limits and statistics."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from immray.protocol.errors import ImmError
from immray.services.database import Database
from immray.services.listing import Listing, list_page
from immray.store import Dataset, File, Project, SortKey, starts_with, utcnow

DEFAULT_SERVICE_ROLE = "AliyunIMMDefaultRole"
DEFAULT_ENGINE_CONCURRENCY = 100
DEFAULT_QUERIES_PER_SECOND = 100


@dataclass(frozen=True)
class DatasetLimits:
    """The Dataset* quotas; a project's are its datasets' defaults (IMM's documented default values)."""

    dataset_max_bind_count: int | None = None
    dataset_max_file_count: int | None = None
    dataset_max_entity_count: int | None = None
    dataset_max_relation_count: int | None = None
    dataset_max_total_file_size: int | None = None


DEFAULT_DATASET_LIMITS = DatasetLimits(
    dataset_max_bind_count=10,
    dataset_max_file_count=100_000_000,
    dataset_max_entity_count=10_000_000_000,
    dataset_max_relation_count=100_000_000_000,
    dataset_max_total_file_size=90_000_000_000_000_000,
)
DEFAULT_PROJECT_MAX_DATASET_COUNT = 1_000_000_000


@dataclass(frozen=True)
class ProjectChanges:
    """CreateProject/UpdateProject input; None = not given (default on create, unchanged on update)."""

    description: str | None = None
    service_role: str | None = None
    template_id: str | None = None
    project_max_dataset_count: int | None = None
    limits: DatasetLimits = field(default_factory=DatasetLimits)
    tags: Sequence[tuple[str, str]] | None = None


@dataclass(frozen=True)
class ProjectStatistics:
    dataset_count: int
    file_count: int
    total_file_size: int


@dataclass(frozen=True)
class ProjectInfo:
    name: str
    description: str | None
    service_role: str | None
    template_id: str | None
    project_max_dataset_count: int | None
    limits: DatasetLimits
    engine_concurrency: int | None
    project_queries_per_second: int | None
    tags: list[tuple[str, str]]
    created_at: datetime
    updated_at: datetime
    statistics: ProjectStatistics | None = None


def _info(row: Project, statistics: ProjectStatistics | None = None) -> ProjectInfo:
    return ProjectInfo(
        name=row.name,
        description=row.description,
        service_role=row.service_role,
        template_id=row.template_id,
        project_max_dataset_count=row.project_max_dataset_count,
        limits=DatasetLimits(**{f.name: getattr(row, f.name) for f in fields(DatasetLimits)}),
        engine_concurrency=row.engine_concurrency,
        project_queries_per_second=row.project_queries_per_second,
        tags=[(tag["Key"], tag["Value"]) for tag in row.tags or ()],
        created_at=row.created_at,
        updated_at=row.updated_at,
        statistics=statistics,
    )


def _apply(row: Project, changes: ProjectChanges) -> None:
    for name in ("description", "service_role", "template_id", "project_max_dataset_count"):
        value = getattr(changes, name)
        if value is not None:
            setattr(row, name, value)
    for limit in fields(DatasetLimits):
        value = getattr(changes.limits, limit.name)
        if value is not None:
            setattr(row, limit.name, value)
    if changes.tags is not None:
        row.tags = [{"Key": key, "Value": value} for key, value in changes.tags]


def find_project(session: Session, name: str, *, for_update: bool = False) -> Project:
    """The project named ``name`` or ResourceNotFound; ``for_update`` locks its row (PostgreSQL)."""
    stmt = select(Project).where(Project.name == name)
    if for_update:
        stmt = stmt.with_for_update()
    row = session.scalar(stmt)
    if row is None:
        raise ImmError.resource_not_found("project", name)
    return row


def create_project(db: Database, name: str, changes: ProjectChanges) -> ProjectInfo:
    try:
        with db.write() as session:
            if session.scalar(select(Project.id).where(Project.name == name)) is not None:
                raise ImmError.resource_already_exists("project", name)
            now = utcnow()  # UpdateTime equals CreateTime until the first update
            row = Project(
                name=name,
                created_at=now,
                updated_at=now,
                service_role=DEFAULT_SERVICE_ROLE,
                project_max_dataset_count=DEFAULT_PROJECT_MAX_DATASET_COUNT,
                engine_concurrency=DEFAULT_ENGINE_CONCURRENCY,
                project_queries_per_second=DEFAULT_QUERIES_PER_SECOND,
                tags=[],
                **{f.name: getattr(DEFAULT_DATASET_LIMITS, f.name) for f in fields(DatasetLimits)},
            )
            _apply(row, changes)
            session.add(row)
            session.flush()
            return _info(row)
    except IntegrityError:  # another request created it between our check and our insert
        raise ImmError.resource_already_exists("project", name) from None


def get_project(db: Database, name: str, *, with_statistics: bool = False) -> ProjectInfo:
    with db.read() as session:
        row = find_project(session, name)
        return _info(row, project_statistics(session, row.id) if with_statistics else None)


def project_statistics(session: Session, project_id: int) -> ProjectStatistics:
    datasets = select(Dataset.id).where(Dataset.project_id == project_id).scalar_subquery()
    dataset_count = session.scalar(select(func.count()).where(Dataset.project_id == project_id)) or 0
    files, size = session.execute(
        select(func.count(File.id), func.coalesce(func.sum(File.size), 0)).where(
            File.dataset_id.in_(datasets)
        )
    ).one()
    return ProjectStatistics(dataset_count, files or 0, int(size or 0))


def list_projects(
    db: Database,
    *,
    limit: int,
    token: str = "",
    prefix: str = "",
    tags: Sequence[tuple[str, str]] = (),
    visible: Callable[[str], bool] | None = None,
) -> Listing[ProjectInfo]:
    """Projects by name; ``tags`` keeps those carrying every given tag, ``visible(name)`` those the caller
    may see (None: all)."""
    wanted = set(tags)

    def keep(row: Project) -> bool:
        if wanted and not wanted <= {(tag["Key"], tag["Value"]) for tag in row.tags or ()}:
            return False
        return visible is None or visible(row.name)

    stmt = select(Project)
    if prefix:
        stmt = stmt.where(starts_with(Project.name, prefix))
    key = SortKey("ProjectName", Project.name, Project.id)
    with db.read() as session:
        page = list_page(
            session, stmt, key, limit=limit, token=token, keep=keep if wanted or visible else None
        )
        return Listing([_info(row) for row in page.items], page.next_token)


def update_project(db: Database, name: str, changes: ProjectChanges) -> ProjectInfo:
    with db.write() as session:
        row = find_project(session, name, for_update=True)
        _apply(row, changes)
        session.flush()
        return _info(row)


def delete_project(db: Database, name: str) -> None:
    """Delete an empty project (its tasks go with it). One that still holds datasets is refused: deleting
    the datasets deletes their files' metadata and faces, which deserves a request of its own."""
    with db.write() as session:
        # Locked first, so a concurrent CreateDataset waits and then finds no project rather than
        # having its new dataset cascaded away unseen.
        row = find_project(session, name, for_update=True)
        remaining = session.scalar(select(func.count()).where(Dataset.project_id == row.id)) or 0
        if remaining:
            names = session.scalars(
                select(Dataset.name).where(Dataset.project_id == row.id).order_by(Dataset.name).limit(5)
            ).all()
            shown = ", ".join(names) + (", ..." if remaining > len(names) else "")
            raise ImmError.operation_conflict(
                f"The project {name} still holds {remaining} dataset(s) ({shown}); delete them with "
                "DeleteDataset first, then delete the project."
            )
        session.delete(row)
