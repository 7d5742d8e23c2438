"""One reader for every kind of URI, configured from Settings (roots, buckets, the size limit)."""

from __future__ import annotations

import json
import threading
from pathlib import Path

from immray.settings import Settings
from immray.sources.local import LocalFiles
from immray.sources.s3 import ObjectStores
from immray.sources.types import SourceInfo, SourceObject
from immray.sources.uris import FileLocation, Location, parse_uri


class Sources:
    def __init__(self, local: LocalFiles, objects: ObjectStores) -> None:
        self._local = local
        self._objects = objects

    @classmethod
    def from_settings(cls, settings: Settings) -> Sources:
        return cls(
            LocalFiles([Path(root) for root in settings.allowed_roots], settings.max_source_bytes),
            ObjectStores(settings.buckets, settings.max_source_bytes),
        )

    def check(self, uri: str) -> Location:
        """The location of ``uri`` if this server may read it (nothing is read); SourceRefused otherwise."""
        location = parse_uri(uri)
        if isinstance(location, FileLocation):
            self._local.check(location)
        else:
            self._objects.check(location)
        return location

    def stat(self, location: Location) -> SourceInfo:
        """Size and fingerprint of the object, without its bytes; SourceUnreadable if it cannot be read."""
        if isinstance(location, FileLocation):
            return self._local.stat(location)
        return self._objects.stat(location)

    def read(self, location: Location) -> SourceObject:
        """The object's bytes and what the source says about them; SourceUnreadable if it cannot be read."""
        if isinstance(location, FileLocation):
            return self._local.read(location)
        return self._objects.read(location)


_cache: dict[str, Sources] = {}
_cache_lock = threading.Lock()


def sources_for(settings: Settings) -> Sources:
    """The process's reader for ``settings`` (one per distinct configuration, so S3 clients are reused)."""
    key = json.dumps(
        [
            [str(root) for root in settings.allowed_roots],
            {
                name: {**bucket.model_dump(mode="json"), "secret": _secret(bucket.secret_access_key)}
                for name, bucket in sorted(settings.buckets.items())
            },
            settings.max_source_bytes,
        ],
        sort_keys=True,
    )
    with _cache_lock:
        found = _cache.get(key)
        if found is None:
            found = _cache[key] = Sources.from_settings(settings)
        return found


def _secret(value) -> str | None:
    return None if value is None else value.get_secret_value()
