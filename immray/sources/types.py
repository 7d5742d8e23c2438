"""What a source says about an object, and the object itself."""

from __future__ import annotations

import mimetypes
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class SourceInfo:
    """``fingerprint`` changes whenever the bytes may have changed (file: size + mtime in ns + inode;
    object store: ETag + size), so equal fingerprints mean re-indexing is a no-op."""

    size: int
    fingerprint: str
    filename: str
    etag: str | None = None
    modified_at: datetime | None = None
    content_type: str | None = None  # as the store declares it, or guessed from the name


@dataclass(frozen=True)
class SourceObject:
    info: SourceInfo
    data: bytes


def guess_content_type(filename: str) -> str | None:
    return mimetypes.guess_type(filename, strict=False)[0]
