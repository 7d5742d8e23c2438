"""People: read, list and curate a dataset's figure clusters (GetFigureCluster, BatchGetFigureCluster,
QueryFigureClusters, UpdateFigureCluster).

Clusters are made and unmade by clustering and merging tasks; here the user reads them and gives them what
only a user knows: a name, a custom id and labels, the face to show. A name travels to the engine at the
next clustering task (two clusters the user named differently are never merged automatically); a chosen
cover stays until its face leaves the cluster. MetaLockVersion guards every update: a caller that read
version N updates only if the cluster is still at N, and the update makes it N + 1.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import String, case, func, select, type_coerce
from sqlalchemy.orm import Session

from immray.protocol.errors import ImmError
from immray.services.database import Database
from immray.services.datasets import find_dataset
from immray.services.file_views import FileView, file_views
from immray.services.json_match import json_key_equals
from immray.services.listing import Listing, list_page
from immray.services.tasks import TimeRange
from immray.store import Dataset, Figure, FigureCluster, File, SortKey, utcnow

MAX_LABELS = 100
MAX_LABEL_KEY = 128
MAX_LABEL_VALUE = 1024
MAX_TEXT = 512
# QueryFigureClusters' Sort values; the ones every cluster of a dataset shares (and VideoCount, immray
# indexes no video) sort by ObjectId, as an empty Sort does. Gender sorts people of no estimated gender
# first (""), then female, then male.
SORTS = (
    "ImageCount",
    "VideoCount",
    "ProjectName",
    "DatasetName",
    "CreateTime",
    "UpdateTime",
    "Gender",
    "FaceCount",
    "Name",
)
_SORT_COLUMNS = {
    "ImageCount": FigureCluster.image_count,
    "FaceCount": FigureCluster.face_count,
    "CreateTime": FigureCluster.created_at,
    "UpdateTime": FigureCluster.updated_at,
    "Name": FigureCluster.name,
}


@dataclass(frozen=True)
class ClusterView:
    object_id: str
    project_name: str
    dataset_name: str
    name: str
    custom_id: str | None
    custom_labels: dict[str, Any] | None
    face_count: int
    image_count: int
    meta_lock_version: int
    created_at: datetime
    updated_at: datetime
    cover: FileView | None  # the cover photo, with the cover face as its only Figure
    people: PersonAttributes | None = None  # from its faces' estimated attributes; None when none has any


@dataclass(frozen=True)
class PersonAttributes:
    """A person's Gender (what most of their faces were estimated as) and the spread of their faces'
    estimated ages (None when no face has an age)."""

    gender: str | None
    average_age: float | None
    min_age: float | None
    max_age: float | None


@dataclass(frozen=True)
class ClusterQuery:
    project_name: str
    dataset_name: str
    sort: str = ""  # "" = by ObjectId
    descending: bool = False
    limit: int = 100
    token: str = ""
    created: TimeRange | None = None
    updated: TimeRange | None = None
    label: tuple[str, str] | None = None  # CustomLabels "key=value"
    with_total_count: bool = False


@dataclass(frozen=True)
class ClusterChanges:
    """UpdateFigureCluster's FigureCluster, checked (see :func:`parse_changes`); None = unchanged."""

    object_id: str
    name: str | None = None
    custom_id: str | None = None
    custom_labels: dict[str, Any] | None = None
    cover_figure_id: str | None = None
    meta_lock_version: int | None = None


# --- reading ---------------------------------------------------------------------------------------


def get_cluster(db: Database, project: str, dataset: str, object_id: str) -> ClusterView:
    with db.read() as session:
        row = find_dataset(session, project, dataset)
        found = _views(session, row, _rows(session, row.id, [object_id]))
        if not found:
            raise ImmError.resource_not_found("figure cluster", object_id)
        return found[0]


def batch_get_clusters(
    db: Database, project: str, dataset: str, object_ids: Sequence[str]
) -> list[ClusterView]:
    """The clusters of ``object_ids`` that exist, in the order asked for."""
    with db.read() as session:
        row = find_dataset(session, project, dataset)
        by_id = {view.object_id: view for view in _views(session, row, _rows(session, row.id, object_ids))}
        return [by_id[oid] for oid in dict.fromkeys(object_ids) if oid in by_id]


def query_clusters(db: Database, query: ClusterQuery) -> tuple[Listing[ClusterView], int | None]:
    """QueryFigureClusters: a page of the dataset's clusters, and their total number when asked for."""
    with db.read() as session:
        row = find_dataset(session, query.project_name, query.dataset_name)
        stmt = select(FigureCluster).where(FigureCluster.dataset_id == row.id)
        for column, window in (
            (FigureCluster.created_at, query.created),
            (FigureCluster.updated_at, query.updated),
        ):
            if window is not None and window.start is not None:
                stmt = stmt.where(column >= window.start)
            if window is not None and window.end is not None:
                stmt = stmt.where(column <= window.end)
        if query.label is not None:
            stmt = stmt.where(json_key_equals(session, FigureCluster.custom_labels, *query.label))
        total = None
        if query.with_total_count:
            total = session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
        column = (
            _gender_column()
            if query.sort == "Gender"
            else _SORT_COLUMNS.get(query.sort, FigureCluster.object_id)
        )
        key = SortKey(query.sort or "ObjectId", column, FigureCluster.object_id, descending=query.descending)
        page = list_page(session, stmt, key, limit=query.limit, token=query.token)
        return Listing(_views(session, row, page.items), page.next_token), total


def _rows(session: Session, dataset_id: int, object_ids: Sequence[str]) -> list[FigureCluster]:
    return list(
        session.scalars(
            select(FigureCluster).where(
                FigureCluster.dataset_id == dataset_id, FigureCluster.object_id.in_(list(set(object_ids)))
            )
        )
    )


def _views(session: Session, dataset: Dataset, rows: Sequence[FigureCluster]) -> list[ClusterView]:
    """Views of cluster rows with their covers, read for the whole page in two queries."""
    project = dataset.project.name
    covers = [row.cover_figure_id for row in rows if row.cover_figure_id is not None]
    files: dict[int, FileView] = {}
    if covers:
        pairs = session.execute(select(Figure.id, Figure.file_id).where(Figure.id.in_(covers))).all()
        file_of = {pk: file_pk for pk, file_pk in pairs if file_pk is not None}
        file_rows = list(session.scalars(select(File).where(File.id.in_(set(file_of.values())))))
        by_file = {
            v.pk: v for v in file_views(session, file_rows, project, dataset.name, only_figures=covers)
        }
        files = {pk: by_file[file_pk] for pk, file_pk in file_of.items() if file_pk in by_file}
    people = _person_attributes(session, [row.id for row in rows])
    return [
        ClusterView(
            object_id=row.object_id,
            project_name=project,
            dataset_name=dataset.name,
            name=row.name,
            custom_id=row.custom_id,
            custom_labels=row.custom_labels,
            face_count=row.face_count,
            image_count=row.image_count,
            meta_lock_version=row.meta_lock_version,
            created_at=row.created_at,
            updated_at=row.updated_at,
            cover=_cover_only(files.get(row.cover_figure_id), row.cover_figure_id, session),
            people=people.get(row.id),
        )
        for row in rows
    ]


def _gender_column():
    """A cluster's Gender as a sortable SQL value, the rule of ``_person_attributes``: the gender most of
    its live faces were estimated as, "" on a tie or when none was."""
    gender = Figure.attributes["Gender"].as_string()
    live = (Figure.cluster_id == FigureCluster.id) & Figure.deleted_at.is_(None)
    males = select(func.count()).where(live, gender == "male").correlate(FigureCluster).scalar_subquery()
    females = select(func.count()).where(live, gender == "female").correlate(FigureCluster).scalar_subquery()
    return type_coerce(case((males > females, "male"), (females > males, "female"), else_=""), String)


def _person_attributes(session: Session, cluster_pks: list[int]) -> dict[int, PersonAttributes]:
    """Gender and age spread of each cluster's live faces, aggregated in SQL for the whole page."""
    if not cluster_pks:
        return {}
    age = Figure.attributes["Age"].as_float()
    gender = Figure.attributes["Gender"].as_string()
    rows = session.execute(
        select(
            Figure.cluster_id,
            func.avg(age),
            func.min(age),
            func.max(age),
            func.sum(case((gender == "male", 1), else_=0)),
            func.sum(case((gender == "female", 1), else_=0)),
        )
        .where(Figure.cluster_id.in_(cluster_pks), Figure.deleted_at.is_(None))
        .group_by(Figure.cluster_id)
    ).all()
    out = {}
    for pk, average, low, high, males, females in rows:
        males, females = int(males or 0), int(females or 0)
        sex = None if males == females else ("male" if males > females else "female")  # a tie: unknown
        if average is None and sex is None:
            continue
        out[pk] = PersonAttributes(
            gender=sex,
            average_age=None if average is None else round(float(average), 1),
            min_age=None if low is None else float(low),
            max_age=None if high is None else float(high),
        )
    return out


def _cover_only(view: FileView | None, cover_pk: int | None, session: Session) -> FileView | None:
    """The cover's file with the cover face alone in its Figures (a photo may hold other faces)."""
    if view is None or cover_pk is None:
        return None
    wanted = session.scalar(select(Figure.figure_id).where(Figure.id == cover_pk))
    figures = tuple(f for f in view.figures if f.figure_id == wanted)
    return FileView(**{**view.__dict__, "figures": figures})


# --- curating --------------------------------------------------------------------------------------


def parse_changes(raw: Mapping[str, Any]) -> ClusterChanges:
    """UpdateFigureCluster's ``FigureCluster`` (FigureClusterForReq) checked, or InvalidArgument."""
    known = {"ObjectId", "Name", "CustomId", "CustomLabels", "MetaLockVersion", "Cover"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ImmError.invalid_argument(
            f"FigureCluster has field(s) that cannot be updated: {', '.join(unknown)[:200]}; only Name, "
            "CustomId, CustomLabels, Cover and MetaLockVersion can."
        )
    object_id = raw.get("ObjectId")
    if not isinstance(object_id, str) or not object_id:
        raise ImmError.invalid_argument("FigureCluster.ObjectId is required.")
    name = _text(raw, "Name")
    custom_id = _text(raw, "CustomId")
    labels = raw.get("CustomLabels")
    if labels is not None:
        labels = check_labels(labels, "FigureCluster.CustomLabels")
    version = raw.get("MetaLockVersion")
    if version is not None and (isinstance(version, bool) or not isinstance(version, int) or version < 0):
        raise ImmError.invalid_argument("FigureCluster.MetaLockVersion must be a whole number from 0.")
    cover = None
    if raw.get("Cover") is not None:
        cover = _cover_figure(raw["Cover"])
    return ClusterChanges(object_id, name, custom_id, labels, cover, version)


def _text(raw: Mapping[str, Any], key: str) -> str | None:
    value = raw.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > MAX_TEXT:
        raise ImmError.invalid_argument(
            f"FigureCluster.{key} must be a string of at most {MAX_TEXT} characters."
        )
    return value


def check_labels(labels: Any, name: str) -> dict[str, Any]:
    """Custom labels: a JSON object of up to 100 keys with string, number or boolean values."""
    if not isinstance(labels, dict):
        raise ImmError.invalid_argument(f"{name} must be a JSON object.")
    if len(labels) > MAX_LABELS:
        raise ImmError.limit_exceeded(f"{name} holds {len(labels)} labels; at most {MAX_LABELS} are allowed.")
    for key, value in labels.items():
        if not key or len(key) > MAX_LABEL_KEY:
            raise ImmError.invalid_argument(f"{name}: a key has 1 to {MAX_LABEL_KEY} characters.")
        if not isinstance(value, str | int | float | bool) or len(str(value)) > MAX_LABEL_VALUE:
            raise ImmError.invalid_argument(
                f"{name}[{key[:64]!r}] must be a string, number or boolean of at most {MAX_LABEL_VALUE} characters."
            )
    return dict(labels)


def _cover_figure(cover: Any) -> str:
    figures = cover.get("Figures") if isinstance(cover, dict) else None
    if (
        not isinstance(figures, list)
        or len(figures) != 1
        or not isinstance(figures[0], dict)
        or not isinstance(figures[0].get("FigureId"), str)
        or not figures[0]["FigureId"]
    ):
        raise ImmError.invalid_argument(
            'FigureCluster.Cover must name one face of the cluster: {"Figures": [{"FigureId": "..."}]}.'
        )
    return figures[0]["FigureId"]


def update_cluster(db: Database, project: str, dataset: str, changes: ClusterChanges) -> ClusterView:
    """UpdateFigureCluster: apply ``changes`` if MetaLockVersion matches; the version then goes up by one."""
    with db.write() as session:
        dataset_row = find_dataset(session, project, dataset)
        row = session.scalar(
            select(FigureCluster)
            .where(FigureCluster.dataset_id == dataset_row.id, FigureCluster.object_id == changes.object_id)
            .with_for_update()
        )
        if row is None:
            raise ImmError.resource_not_found("figure cluster", changes.object_id)
        if changes.meta_lock_version is not None and changes.meta_lock_version != row.meta_lock_version:
            raise ImmError.operation_conflict(
                f"The figure cluster {row.object_id} is at MetaLockVersion {row.meta_lock_version}, not "
                f"{changes.meta_lock_version}: it was updated since you read it. Read it again and retry."
            )
        if changes.cover_figure_id is not None:
            pk = session.scalar(
                select(Figure.id).where(
                    Figure.figure_id == changes.cover_figure_id,
                    Figure.cluster_id == row.id,
                    Figure.deleted_at.is_(None),
                )
            )
            if pk is None:
                raise ImmError.invalid_argument(
                    f"FigureCluster.Cover: the face {changes.cover_figure_id[:64]} is not in the cluster "
                    f"{row.object_id}."
                )
            row.cover_figure_id = pk
            row.cover_chosen_by_user = True
        if changes.name is not None:
            row.name = changes.name
        if changes.custom_id is not None:
            row.custom_id = changes.custom_id or None
        if changes.custom_labels is not None:
            row.custom_labels = changes.custom_labels
        row.meta_lock_version = row.meta_lock_version + 1
        row.updated_at = utcnow()
        session.flush()
        return _views(session, dataset_row, [row])[0]
