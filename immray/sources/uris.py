"""Parsing the URIs a client may give: ``file:///abs/path``, ``s3://bucket/key``, ``oss://bucket/key``.

Pure: nothing here touches the file system or the network, so a request can be judged before anything of
it is accepted. ``file://`` paths are percent-decoded (RFC 8089) BEFORE they are checked, so ``%2e%2e``
is a ``..`` and ``%00`` a NUL, both refused. Object keys are taken as written (IMM's ``oss://`` URIs carry
raw keys), and everything after the bucket's slash is the key, ``?`` and ``#`` included.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes, urlsplit

from immray.sources.errors import SourceRefused

MAX_URI_CHARS = 2048  # the store's column
OBJECT_SCHEMES = ("s3", "oss")
# S3's and OSS's bucket rules (3-63 lower-case letters, digits, dots and dashes, a letter or digit first).
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):")


@dataclass(frozen=True)
class FileLocation:
    """A local file: ``path`` is the decoded absolute path as given (resolved again whenever it is read)."""

    uri: str
    path: str

    @property
    def filename(self) -> str:
        return os.path.basename(self.path)


@dataclass(frozen=True)
class ObjectLocation:
    """An object of an S3-compatible store."""

    uri: str
    scheme: str  # s3 | oss
    bucket: str
    key: str

    @property
    def filename(self) -> str:
        return self.key.rsplit("/", 1)[-1]


Location = FileLocation | ObjectLocation


def parse_uri(uri: str) -> Location:
    """The location ``uri`` names, or SourceRefused saying what is wrong with it."""
    if not isinstance(uri, str) or not uri:
        raise SourceRefused(str(uri), "the URI is empty")
    if len(uri) > MAX_URI_CHARS:
        raise SourceRefused(uri, f"the URI is longer than {MAX_URI_CHARS} characters")
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in uri):
        raise SourceRefused(uri, "the URI holds control characters")
    match = _SCHEME.match(uri)
    if match is None:
        raise SourceRefused(
            uri, "the URI has no scheme: write file:///abs/path, s3://bucket/key or oss://bucket/key"
        )
    scheme = match[1].lower()
    if scheme == "file":
        return _file_location(uri)
    if scheme in OBJECT_SCHEMES:
        return _object_location(uri, scheme)
    if scheme in ("http", "https"):
        raise SourceRefused(
            uri,
            "http(s) URIs are refused: immray fetches no arbitrary addresses (use file://, s3:// or oss://)",
        )
    raise SourceRefused(uri, f"the scheme {scheme}:// is not supported: use file://, s3:// or oss://")


def _file_location(uri: str) -> FileLocation:
    parts = urlsplit(uri)
    if parts.query or parts.fragment or uri.endswith(("?", "#")):
        raise SourceRefused(uri, "a file URI has no query or fragment: percent-encode ? and # (%3F, %23)")
    if parts.netloc not in ("", "localhost"):
        raise SourceRefused(uri, f"the file URI names the host {parts.netloc!r}: only local files are read")
    if not parts.path.startswith("/"):
        raise SourceRefused(uri, "the file URI's path is relative: write file:///absolute/path")
    raw = unquote_to_bytes(parts.path)
    if b"\x00" in raw:
        raise SourceRefused(uri, "the file URI's path holds a NUL character")
    path = os.fsdecode(raw)
    if not path.startswith("/"):
        raise SourceRefused(uri, "the file URI's path is relative: write file:///absolute/path")
    if any(segment == ".." for segment in path.split("/")):
        raise SourceRefused(uri, "the file URI's path holds a '..' segment")
    return FileLocation(uri, path)


def _object_location(uri: str, scheme: str) -> ObjectLocation:
    rest = uri[len(scheme) + 1 :]
    if not rest.startswith("//"):
        raise SourceRefused(uri, f"write {scheme}://bucket/key")
    bucket, slash, key = rest[2:].partition("/")
    if not _BUCKET.fullmatch(bucket):
        raise SourceRefused(
            uri, f"{bucket!r} is not a bucket name (3-63 lower-case letters, digits, '.', '-')"
        )
    if not slash or not key:
        raise SourceRefused(
            uri, f"the URI names the bucket {bucket} but no object: write {scheme}://bucket/key"
        )
    if len(key.encode("utf-8", "surrogatepass")) > 1023:
        raise SourceRefused(uri, "the object key is longer than 1023 bytes")
    return ObjectLocation(uri, scheme, bucket, key)
