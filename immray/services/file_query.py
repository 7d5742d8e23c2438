"""SimpleQuery on a dataset's files: the fields and operators a face library needs, in SQL.

IMM's query is a tree ``{Field, Operation, Value, SubQueries}``. immray answers ``and``, ``or`` and
``not`` over ``eq`` on ``Figures.FigureClusterId`` (the photos of one person; the reserved
``figure-cluster-id-independent`` / ``-unavailable`` values find photos with such faces), ``URI``,
``CustomId``, ``Filename``, ``ContentType``, ``MediaType`` and ``ObjectStatus``, ``prefix`` on
``URI``, ``CustomId`` and ``Filename``, and the face attributes a model estimated: ``eq``/``gt``/``gte``/
``lt``/``lte`` on ``Figures.Age`` and ``eq`` on ``Figures.Gender`` and ``Figures.Emotion`` (a file matches
when one of its live faces does). Anything else is refused by name, never silently ignored. Pages are
keyset pages on one sort field (default: newest first), so paging through a person's photos costs the same
on page 100 as on page 1.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, exists, func, literal, not_, or_, select

from immray.protocol.errors import ImmError
from immray.services.database import Database
from immray.services.datasets import find_dataset
from immray.services.file_views import FileView, file_views
from immray.services.listing import Listing, list_page
from immray.store import (
    INDEPENDENT_CLUSTER_ID,
    UNAVAILABLE_CLUSTER_ID,
    ClusterState,
    Figure,
    FigureCluster,
    File,
    SortKey,
    starts_with,
)

MAX_DEPTH = 8
MAX_NODES = 100
MAX_VALUE = 2048
_LOGICAL = ("and", "or", "not")
_EQ_FIELDS = {
    "URI": File.uri,
    "CustomId": File.custom_id,
    "Filename": File.filename,
    "ContentType": File.content_type,
    "MediaType": File.media_type,
    "ObjectStatus": File.object_status,
}
_PREFIX_FIELDS = {"URI": File.uri, "CustomId": File.custom_id, "Filename": File.filename}
_FIGURE_CLUSTER = "Figures.FigureClusterId"
_FIGURE_AGE = "Figures.Age"
_FIGURE_WORDS = {"Figures.Gender": "Gender", "Figures.Emotion": "Emotion"}
_COMPARISONS = {
    "eq": lambda a, b: a == b,
    "gt": lambda a, b: a > b,
    "gte": lambda a, b: a >= b,
    "lt": lambda a, b: a < b,
    "lte": lambda a, b: a <= b,
}
_EPOCH = datetime(1, 1, 1, tzinfo=UTC)
SORTS: dict[str, Any] = {
    "URI": File.uri,
    "CustomId": func.coalesce(File.custom_id, literal("")),
    "Filename": func.coalesce(File.filename, literal("")),
    "Size": func.coalesce(File.size, literal(-1)),
    "CreateTime": File.created_at,
    "UpdateTime": File.updated_at,
    "FileModifiedTime": func.coalesce(File.file_modified_at, literal(_EPOCH, File.file_modified_at.type)),
    "ProduceTime": func.coalesce(File.produced_at, literal(_EPOCH, File.produced_at.type)),
    "FigureCount": func.coalesce(File.figure_count, literal(-1)),
    "ImageWidth": func.coalesce(File.image_width, literal(-1)),
    "ImageHeight": func.coalesce(File.image_height, literal(-1)),
}


@dataclass(frozen=True)
class FileQuery:
    project_name: str
    dataset_name: str
    query: Mapping[str, Any] | None
    sort: str | None = None
    descending: bool = True
    limit: int = 100
    token: str = ""
    with_total: bool = True


def condition(query: Mapping[str, Any], dataset_id: int) -> ColumnElement[bool]:
    """The SQL condition of a SimpleQuery tree, or InvalidArgument naming what is not supported."""
    counter = [0]
    return _node(query, dataset_id, depth=0, counter=counter, path="Query")


def _node(node: Any, dataset_id: int, *, depth: int, counter: list[int], path: str) -> ColumnElement[bool]:
    counter[0] += 1
    if counter[0] > MAX_NODES:
        raise ImmError.invalid_argument(f"The query holds more than {MAX_NODES} conditions.")
    if depth > MAX_DEPTH:
        raise ImmError.invalid_argument(f"The query is nested deeper than {MAX_DEPTH} levels.")
    if not isinstance(node, Mapping):
        raise ImmError.invalid_argument(f"{path} must be a JSON object with Field, Operation and Value.")
    operation = node.get("Operation")
    if not isinstance(operation, str) or not operation:
        raise ImmError.invalid_argument(f"{path}.Operation is required.")
    operation = operation.lower()
    subqueries = node.get("SubQueries") or []
    if not isinstance(subqueries, list):
        raise ImmError.invalid_argument(f"{path}.SubQueries must be a JSON array.")
    if operation in _LOGICAL:
        if not subqueries or (operation == "not" and len(subqueries) != 1):
            want = "one subquery" if operation == "not" else "at least one subquery"
            raise ImmError.invalid_argument(f"{path}: {operation} takes {want} in SubQueries.")
        parts = [
            _node(sub, dataset_id, depth=depth + 1, counter=counter, path=f"{path}.SubQueries[{i}]")
            for i, sub in enumerate(subqueries)
        ]
        if operation == "not":
            return not_(parts[0])
        return and_(*parts) if operation == "and" else or_(*parts)
    if subqueries:
        raise ImmError.invalid_argument(f"{path}: {operation} takes no SubQueries.")
    field = node.get("Field")
    value = node.get("Value")
    if not isinstance(field, str) or not field:
        raise ImmError.invalid_argument(f"{path}.Field is required for {operation}.")
    if not isinstance(value, str) or len(value) > MAX_VALUE:
        raise ImmError.invalid_argument(f"{path}.Value must be a string of at most {MAX_VALUE} characters.")
    if operation == "eq" and field == _FIGURE_CLUSTER:
        return _has_face_in(value, dataset_id)
    if field == _FIGURE_AGE and operation in _COMPARISONS:
        return _has_face_aged(operation, value, path)
    if operation == "eq" and field in _FIGURE_WORDS:
        return _has_face_where(Figure.attributes[_FIGURE_WORDS[field]].as_string() == value)
    if operation == "eq" and field in _EQ_FIELDS:
        return _EQ_FIELDS[field] == value
    if operation == "prefix" and field in _PREFIX_FIELDS:
        return starts_with(_PREFIX_FIELDS[field], value)
    raise ImmError.invalid_argument(
        f"{path}: {operation} on {field[:128]} is not supported; immray answers and/or/not, eq on "
        f"{_FIGURE_CLUSTER}, {', '.join(_FIGURE_WORDS)}, {', '.join(_EQ_FIELDS)}, {'/'.join(_COMPARISONS)} "
        f"on {_FIGURE_AGE}, and prefix on {', '.join(_PREFIX_FIELDS)}."
    )


def _has_face_where(test: ColumnElement[bool]) -> ColumnElement[bool]:
    """The file has a live face passing ``test``."""
    return exists(select(Figure.id).where(Figure.file_id == File.id, Figure.deleted_at.is_(None), test))


def _has_face_aged(operation: str, value: str, path: str) -> ColumnElement[bool]:
    """The file has a live face whose estimated Age compares to ``value`` (years) as ``operation`` says."""
    try:
        years = float(value.strip())
    except ValueError:
        years = float("nan")
    if not 0 <= years <= 200:
        raise ImmError.invalid_argument(
            f"{path}.Value for {_FIGURE_AGE} must be a number of years, not {value[:64]!r}."
        )
    age = Figure.attributes["Age"].as_float()
    return _has_face_where(and_(age.is_not(None), _COMPARISONS[operation](age, years)))


def _has_face_in(cluster_id: str, dataset_id: int) -> ColumnElement[bool]:
    """The file has a live face whose FigureClusterId is ``cluster_id``."""
    face = select(Figure.id).where(Figure.file_id == File.id, Figure.deleted_at.is_(None))
    if cluster_id == INDEPENDENT_CLUSTER_ID:
        return exists(face.where(Figure.cluster_state == ClusterState.INDEPENDENT))
    if cluster_id == UNAVAILABLE_CLUSTER_ID:
        return exists(face.where(Figure.cluster_state == ClusterState.UNAVAILABLE))
    cluster = select(FigureCluster.id).where(
        FigureCluster.dataset_id == dataset_id, FigureCluster.object_id == cluster_id
    )
    return exists(face.where(Figure.cluster_id == cluster.scalar_subquery()))


def sort_key(sort: str | None, descending: bool) -> SortKey:
    if not sort:
        return SortKey("Default", File.id, File.id, descending=descending)
    names = [part.strip() for part in sort.split(",") if part.strip()]
    if len(names) != 1 or names[0] not in SORTS:
        raise ImmError.invalid_argument(
            f"The parameter Sort must be one of {', '.join(SORTS)} (immray sorts by one field), "
            f"not {sort[:64]!r}."
        )
    return SortKey(names[0], SORTS[names[0]], File.id, descending=descending)


def parse_order(order: str | None) -> bool:
    """Order (a comma list in IMM, one per Sort field): descending unless ``asc``; default desc."""
    if not order:
        return True
    words = [part.strip().lower() for part in order.split(",") if part.strip()]
    if len(words) != 1 or words[0] not in ("asc", "desc"):
        raise ImmError.invalid_argument(f"The parameter Order must be asc or desc, not {order[:64]!r}.")
    return words[0] == "desc"


def simple_query(db: Database, query: FileQuery) -> tuple[Listing[FileView], int | None]:
    """A page of the files matching ``query`` (with their faces), and the total number of matches."""
    with db.read() as session:
        dataset = find_dataset(session, query.project_name, query.dataset_name)
        stmt = select(File).where(File.dataset_id == dataset.id)
        if query.query is not None:
            stmt = stmt.where(condition(query.query, dataset.id))
        total = None
        if query.with_total:
            total = session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
        key = sort_key(query.sort, query.descending)
        page = list_page(session, stmt, key, limit=query.limit, token=query.token)
        views = file_views(session, page.items, query.project_name, query.dataset_name)
        return Listing(views, page.next_token), total
