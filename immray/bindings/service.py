"""CreateBinding, GetBinding, ListBindings, DeleteBinding: the binding rows. Syncing is ``sync``/``runner``.

A new binding is ``Ready`` in ``FullScanning``; the runner that claims it makes it ``Running``, and
``IncrementalScanning`` once every image of the first scan is analysed. DeleteBinding removes the row, so
its runner stops at its next look; the metadata it indexed stays in the dataset.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from immray.bindings.locations import bind_location
from immray.protocol.errors import ImmError
from immray.services.database import Database
from immray.services.datasets import find_dataset
from immray.services.listing import Listing, list_page
from immray.sources import SourceRefused, Sources
from immray.store import Binding, SortKey

DEFAULT_MAX_BIND_COUNT = 10


class State:
    READY = "Ready"
    RUNNING = "Running"
    RETRYING = "Retrying"
    STOPPED = "Stopped"
    FAILED = "Failed"


class Phase:
    FULL = "FullScanning"
    INCREMENTAL = "IncrementalScanning"


@dataclass(frozen=True)
class BindingInfo:
    project_name: str
    dataset_name: str
    uri: str
    state: str
    phase: str | None
    reason: str | None
    created_at: datetime
    updated_at: datetime


def normalized_uri(sources: Sources, uri: str) -> str:
    try:
        return bind_location(sources, uri).uri
    except SourceRefused as exc:
        raise ImmError.invalid_argument(f"The URI {uri[:512]} is refused: {exc.message}.") from None


def _lookup_uri(uri: str) -> list[str]:
    """The stored forms a GetBinding/DeleteBinding URI may match (a folder with or without its slash)."""
    return [uri, uri + "/"] if uri.startswith("file:") and not uri.endswith("/") else [uri]


def _info(row: Binding, project: str, dataset: str) -> BindingInfo:
    return BindingInfo(
        project, dataset, row.uri, row.state, row.phase, row.reason, row.created_at, row.updated_at
    )


def create_binding(db: Database, sources: Sources, project: str, dataset: str, uri: str) -> BindingInfo:
    normalized = normalized_uri(sources, uri)
    with db.write() as session:
        dataset_row = find_dataset(session, project, dataset, for_update=True)
        if session.scalar(
            select(Binding.id).where(Binding.dataset_id == dataset_row.id, Binding.uri == normalized)
        ):
            raise ImmError.resource_already_exists("binding", normalized)
        count = session.scalar(select(func.count(Binding.id)).where(Binding.dataset_id == dataset_row.id))
        limit = dataset_row.dataset_max_bind_count or DEFAULT_MAX_BIND_COUNT
        if (count or 0) >= limit:
            raise ImmError.limit_exceeded(
                f"The dataset {dataset} has {count} binding(s), its DatasetMaxBindCount of {limit}."
            )
        row = Binding(
            dataset_id=dataset_row.id, uri=normalized, state=State.READY, phase=Phase.FULL, cursor={}
        )
        session.add(row)
        session.flush()
        return _info(row, project, dataset)


def _find(session: Session, project: str, dataset: str, uri: str) -> Binding:
    dataset_row = find_dataset(session, project, dataset)
    row = session.scalar(
        select(Binding).where(Binding.dataset_id == dataset_row.id, Binding.uri.in_(_lookup_uri(uri)))
    )
    if row is None:
        raise ImmError.resource_not_found("binding", uri)
    return row


def get_binding(db: Database, project: str, dataset: str, uri: str) -> BindingInfo:
    with db.read() as session:
        return _info(_find(session, project, dataset, uri), project, dataset)


def list_bindings(
    db: Database, project: str, dataset: str, *, limit: int, token: str = "", uri_prefix: str = ""
) -> Listing[BindingInfo]:
    from immray.store import starts_with

    with db.read() as session:
        dataset_row = find_dataset(session, project, dataset)
        stmt = select(Binding).where(Binding.dataset_id == dataset_row.id)
        if uri_prefix:
            stmt = stmt.where(starts_with(Binding.uri, uri_prefix))
        page = list_page(session, stmt, SortKey("URI", Binding.uri, Binding.id), limit=limit, token=token)
        return Listing([_info(row, project, dataset) for row in page.items], page.next_token)


def delete_binding(db: Database, project: str, dataset: str, uri: str) -> None:
    """Stop syncing ``uri``: the row goes (its runner lets go at its next look); the metadata stays."""
    with db.write() as session:
        session.delete(_find(session, project, dataset, uri))
