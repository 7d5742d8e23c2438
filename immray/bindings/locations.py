"""What a binding points at, and what is there now.

A binding's URI is normalised so that every member URI starts with it: a folder becomes
``file:///abs/dir/`` (members are ``Path(...).as_uri()``, as ``immray index`` writes them) and a bucket
``s3://bucket/prefix`` (the prefix as written, ``s3://bucket/`` for the whole bucket). Listing yields the
images only (by suffix, hidden files and folders skipped): a text file is skipped quietly, a corrupt JPEG
is listed and fails alone when it is analysed.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from immray.folder_index import PHOTO_SUFFIXES
from immray.settings import Settings
from immray.sources import SourceRefused, Sources, parse_uri
from immray.sources.s3 import ObjectStores, _make_client
from immray.sources.uris import OBJECT_SCHEMES, FileLocation, ObjectLocation


class ListingFailed(RuntimeError):
    """The location cannot be listed now (folder gone, endpoint down); the runner retries later."""


@dataclass(frozen=True)
class BoundFolder:
    uri: str  # normalised: file:///abs/dir/
    path: str  # the folder as written (members' URIs are built from it, not from its real path)


@dataclass(frozen=True)
class BoundPrefix:
    uri: str  # normalised: s3://bucket/prefix
    scheme: str
    bucket: str
    prefix: str


BoundLocation = BoundFolder | BoundPrefix


def is_image(name: str) -> bool:
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in PHOTO_SUFFIXES


def bind_location(sources: Sources, uri: str, *, must_exist: bool = True) -> BoundLocation:
    """The location ``uri`` names, normalised; SourceRefused (the caller makes it InvalidArgument).
    ``must_exist``: a folder must be there (when binding; a runner finds out by listing)."""
    scheme = uri.split(":", 1)[0].lower() if ":" in uri else ""
    if scheme in OBJECT_SCHEMES:
        rest = uri[len(scheme) + 3 :] if uri[len(scheme) :].startswith("://") else None
        if rest is None:
            raise SourceRefused(uri, f"write {scheme}://bucket/prefix/")
        bucket, _, prefix = rest.partition("/")
        probe = f"{scheme}://{bucket}/{prefix or 'probe'}"
        try:
            location = sources.check(probe)
        except SourceRefused as exc:
            raise SourceRefused(uri, exc.message) from None
        assert isinstance(location, ObjectLocation)
        return BoundPrefix(f"{scheme}://{bucket}/{prefix}", scheme, bucket, prefix)
    location = parse_uri(uri)
    if not isinstance(location, FileLocation):
        raise SourceRefused(uri, "bind a folder (file:///dir/) or a bucket prefix (s3://, oss://)")
    sources.check(uri)  # under an allowed root, as written and resolved
    path = os.path.normpath(location.path)
    if must_exist and not os.path.isdir(path):
        raise SourceRefused(uri, "the path is not a folder on the server")
    base = Path(path).as_uri()
    return BoundFolder(base if base.endswith("/") else base + "/", path)


def list_images(location: BoundLocation, sources: Sources, settings: Settings) -> dict[str, str]:
    """URI -> signature of every image under ``location`` that this server may read."""
    if isinstance(location, BoundFolder):
        return _list_folder(location, sources)
    return _list_prefix(location, settings)


def _list_folder(location: BoundFolder, sources: Sources) -> dict[str, str]:
    if not os.path.isdir(location.path):
        raise ListingFailed(f"the folder {location.path} does not exist (any more)")
    found: dict[str, str] = {}
    errors: list[OSError] = []
    for directory, subdirs, names in os.walk(location.path, onerror=errors.append):
        subdirs[:] = sorted(name for name in subdirs if not name.startswith("."))
        for name in names:
            if not is_image(name):
                continue
            path = os.path.join(directory, name)
            uri = Path(path).as_uri()
            try:
                sources.check(uri)  # a symlink out of the roots is left out, not indexed
                stat = os.stat(path)
            except (SourceRefused, OSError):
                continue
            if os.path.isfile(path):
                found[uri] = f"{stat.st_size}:{stat.st_mtime_ns}:{stat.st_ino}"
    if errors and not found and not os.path.isdir(location.path):
        raise ListingFailed(f"the folder {location.path} cannot be listed: {errors[0]}")
    return found


_clients: dict[str, Any] = {}
_clients_lock = threading.Lock()


def _list_prefix(location: BoundPrefix, settings: Settings) -> dict[str, str]:
    from botocore.exceptions import BotoCoreError, ClientError

    probe = ObjectLocation(location.uri, location.scheme, location.bucket, location.prefix or "probe")
    try:
        name, config = ObjectStores(settings.buckets, settings.max_source_bytes).bucket_config(probe)
    except SourceRefused as exc:
        raise ListingFailed(exc.message) from None
    with _clients_lock:
        client = _clients.get(name)
        if client is None:
            client = _clients[name] = _make_client(config)
    found: dict[str, str] = {}
    try:
        pages = client.get_paginator("list_objects_v2").paginate(
            Bucket=location.bucket, Prefix=location.prefix
        )
        for page in pages:
            for item in page.get("Contents") or ():
                key = item["Key"]
                if key.endswith("/") or not is_image(key.rsplit("/", 1)[-1]):
                    continue
                found[f"{location.scheme}://{location.bucket}/{key}"] = _object_signature(item)
    except (BotoCoreError, ClientError) as exc:
        raise ListingFailed(f"the bucket {location.bucket} cannot be listed: {exc}") from None
    return found


def _object_signature(item: Mapping[str, Any]) -> str:
    etag = str(item.get("ETag") or "").strip('"')
    modified = item.get("LastModified")
    return f"{etag}:{item.get('Size')}:{modified.isoformat() if modified else ''}"
