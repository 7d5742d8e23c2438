"""One pass over a binding: list its location, compare with what the last pass saw, act on the difference.

The binding's ``cursor["seen"]`` (``cursor["scanned_at"]``: when the last pass ended) maps each image URI to the signature it had when it was last submitted
(size + mtime + inode, or ETag + size). A pass indexes the images that are new or whose signature changed
(``services.indexing.accept``: the same Pending rows and index-file jobs as BatchIndexFileMeta) and
deletes the metadata of those that vanished (``services.files.delete_files``: faces become tombstones).
``seen`` is saved every few seconds during a pass and at its end, so a pass cut short by a restart resumes
about where it stopped (submitting a photo twice is harmless: the second analysis of an unchanged file is a
no-op) and an unchanged tree costs one listing, no analysis.

Every write is conditional on this runner still holding the binding's lease; a deleted binding (or one
another runner took over) stops the pass at its next batch.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select, update

from immray.bindings.locations import ListingFailed, bind_location, list_images
from immray.bindings.service import Phase, State
from immray.protocol.errors import ImmError
from immray.services import files as file_service
from immray.services import indexing
from immray.services.database import Database
from immray.services.input_files import InputFile
from immray.settings import Settings
from immray.sources import SourceRefused, Sources
from immray.store import Binding, Dataset, File, ObjectStatus, starts_with, utcnow

log = logging.getLogger("immray.bindings")

BATCH = indexing.MAX_BATCH
CHECKPOINT_SECONDS = 5.0  # a pass cut short re-submits at most this much work (idempotently)


@dataclass(frozen=True)
class PassResult:
    listed: int
    submitted: int
    deleted: int


@dataclass(frozen=True)
class _Bound:
    uri: str
    dataset_id: int
    project: str
    dataset: str
    seen: dict[str, str]


def _batches(items: Sequence[str], size: int = BATCH) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _load(db: Database, binding_id: int, owner: str) -> _Bound | None:
    with db.read() as session:
        row = session.get(Binding, binding_id)
        if row is None or row.lease_owner != owner:
            return None
        dataset = session.get(Dataset, row.dataset_id)
        seen = dict((row.cursor or {}).get("seen") or {})
        return _Bound(row.uri, row.dataset_id, dataset.project.name, dataset.name, seen)


def _write(
    db: Database, binding_id: int, owner: str, *, lease_seconds: float | None = None, **values: Any
) -> bool:
    """Update the binding if this runner still holds it (renewing the lease when ``lease_seconds``);
    False when it does not (deleted, taken over)."""
    if lease_seconds is not None:
        values["lease_expires_at"] = utcnow() + timedelta(seconds=lease_seconds)
    if "state" not in values and "phase" not in values:
        values["updated_at"] = Binding.updated_at  # the scanner's bookkeeping is not an update of it
    with db.write() as session:
        done = session.execute(
            update(Binding)
            .where(Binding.id == binding_id, Binding.lease_owner == owner)
            .values(**values)
            .returning(Binding.id)
        ).first()
    return done is not None


def _set_state(db: Database, binding_id: int, owner: str, state: str, reason: str | None) -> bool:
    with db.read() as session:
        row = session.get(Binding, binding_id)
        if row is None or (row.state, row.reason) == (state, reason):
            return row is not None
    return _write(db, binding_id, owner, state=state, reason=reason)


def scan(
    db: Database,
    sources: Sources,
    settings: Settings,
    binding_id: int,
    *,
    owner: str,
    lease_seconds: float | None = None,
) -> PassResult | None:
    """One pass over binding ``binding_id`` held by ``owner``; None when it stopped early (the binding is
    gone, no longer ours, or its location cannot be listed now: then it is Retrying with a Reason)."""
    bound = _load(db, binding_id, owner)
    if bound is None:
        return None
    try:
        listing = list_images(bind_location(sources, bound.uri, must_exist=False), sources, settings)
    except (SourceRefused, ListingFailed) as exc:
        if isinstance(exc, SourceRefused):  # the roots or buckets of the server changed since
            reason = f"[InvalidArgument] {exc.message}"
        else:
            reason = f"[SourceUnavailable] {exc}"
        log.warning("binding %s: %s", bound.uri, reason)
        _set_state(db, binding_id, owner, State.RETRYING, reason)
        return None
    seen = bound.seen
    changed = sorted(uri for uri, signature in listing.items() if seen.get(uri) != signature)
    removed = sorted(uri for uri in seen if uri not in listing)
    if (changed or removed) and not _set_state(db, binding_id, owner, State.RUNNING, None):
        return None
    saved_at = time.monotonic()

    def checkpoint(*, force: bool = False, **extra: Any) -> bool:
        """Save ``seen`` (every few seconds, not per batch: the map grows with the tree); False when the
        binding is no longer ours."""
        nonlocal saved_at
        if not force and time.monotonic() - saved_at < CHECKPOINT_SECONDS:
            return True
        saved_at = time.monotonic()
        return _write(db, binding_id, owner, cursor={"seen": seen, **extra}, lease_seconds=lease_seconds)

    try:
        for batch in _batches(removed):
            file_service.delete_files(db, bound.project, bound.dataset, list(batch), must_exist=False)
            for uri in batch:
                seen.pop(uri, None)
            if not checkpoint():
                return None
        for batch in _batches(changed):
            request = indexing.IndexRequest(
                project_name=bound.project,
                dataset_name=bound.dataset,
                files=[InputFile(uri=uri) for uri in batch],
                action="IndexFileMeta",
            )
            indexing.accept(db, sources, request)
            seen.update({uri: listing[uri] for uri in batch})
            if not checkpoint():
                return None
    except ImmError as exc:  # the dataset is full, or went away meanwhile
        log.warning("binding %s: %s", bound.uri, exc.message)
        checkpoint(force=True)
        _set_state(db, binding_id, owner, State.RETRYING, f"[{exc.code}] {exc.message}")
        return None
    if changed or removed:
        log.info("binding %s: %d image(s) submitted, %d deleted", bound.uri, len(changed), len(removed))
    _set_state(db, binding_id, owner, State.RUNNING, None)
    checkpoint(force=True, scanned_at=utcnow().isoformat())
    return PassResult(len(listing), len(changed), len(removed))


def settle(db: Database, binding_id: int, *, owner: str) -> bool:
    """End the full scan once none of the binding's images waits for analysis; True when it has ended."""
    with db.read() as session:
        row = session.get(Binding, binding_id)
        if row is None or row.lease_owner != owner:
            return False
        if row.phase == Phase.INCREMENTAL:
            return True
        if not (row.cursor or {}).get("seen") and row.state != State.RUNNING:
            return False  # not scanned yet
        pending = session.scalar(
            select(func.count(File.id)).where(
                File.dataset_id == row.dataset_id,
                starts_with(File.uri, row.uri),
                File.object_status == ObjectStatus.PENDING,
            )
        )
    if pending:
        return False
    return _write(db, binding_id, owner, phase=Phase.INCREMENTAL)
