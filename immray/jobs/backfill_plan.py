"""What a backfill has to do: the photos under its location that the dataset lacks or holds changed.

The location is listed as a binding's is (``bindings.locations``: a folder under the allowed roots, or a
bucket prefix; images only, hidden files skipped). A photo the dataset already holds Indexed with the
fingerprint the listing shows (file: size + mtime + inode; object: size + ETag, as ``sources`` records
them) is skipped, so a backfill submitted again analyses only what is new, changed, failed or left Pending
by a run cut short. A photo whose fingerprint cannot be told from the listing is analysed again, which
``services.indexing`` makes a no-op when it is in fact unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from immray.bindings.locations import ListingFailed, bind_location, list_images
from immray.protocol.errors import ImmError
from immray.services import datasets, projects
from immray.services.database import Database
from immray.settings import Settings
from immray.sources import SourceRefused, Sources
from immray.sources.uris import OBJECT_SCHEMES
from immray.store import File, ObjectStatus, starts_with


class BackfillRefused(Exception):
    """The backfill cannot start (location refused or unlistable, no such dataset); the message says why."""


@dataclass(frozen=True)
class Plan:
    location: str  # normalised: file:///abs/dir/ or s3://bucket/prefix
    listed: int
    to_index: list[str]  # URIs, sorted

    @property
    def skipped(self) -> int:
        return self.listed - len(self.to_index)


def listed_fingerprint(uri: str, signature: str) -> str | None:
    """The fingerprint ``sources`` records for an object, from its listing signature (None if unknown)."""
    scheme = uri.split(":", 1)[0].lower()
    if scheme == "file":
        return f"file:{signature}"  # size:mtime_ns:inode, both ways
    if scheme in OBJECT_SCHEMES:
        etag, size, _ = (signature.split(":", 2) + ["", ""])[:3]
        return f"{scheme}:{size}:{etag}" if etag else None
    return None


def plan_backfill(
    db: Database, sources: Sources, settings: Settings, location: str, project: str, dataset: str
) -> Plan:
    """List ``location`` and compare it with what dataset ``project/dataset`` holds."""
    try:
        bound = bind_location(sources, location)
        listing = list_images(bound, sources, settings)
    except SourceRefused as exc:
        raise BackfillRefused(
            f"the location {location} is refused: {exc.message} (the job's IMMRAY_ALLOWED_ROOTS or "
            "IMMRAY_BUCKETS must name it, as the server's do)"
        ) from None
    except ListingFailed as exc:
        raise BackfillRefused(f"the location {location} cannot be listed: {exc}") from None
    with db.read() as session:
        try:
            row = datasets.find_dataset(session, project, dataset)
        except ImmError as exc:
            raise BackfillRefused(exc.message) from None
        indexed = dict(
            session.execute(
                select(File.uri, File.fingerprint).where(
                    File.dataset_id == row.id,
                    starts_with(File.uri, bound.uri),
                    File.object_status == ObjectStatus.INDEXED,
                )
            ).all()
        )
    to_index = sorted(
        uri
        for uri, signature in listing.items()
        if indexed.get(uri) is None or indexed[uri] != listed_fingerprint(uri, signature)
    )
    return Plan(bound.uri, len(listing), to_index)


def ensure_dataset(db: Database, project: str, dataset: str) -> None:
    """Create the project and the dataset when missing (as ``immray index`` does), with IMM's defaults."""
    for create in (
        lambda: projects.create_project(db, project, projects.ProjectChanges()),
        lambda: datasets.create_dataset(db, project, dataset, datasets.DatasetChanges()),
    ):
        try:
            create()
        except ImmError as exc:
            if exc.code != "ResourceAlreadyExists":
                raise BackfillRefused(exc.message) from None
