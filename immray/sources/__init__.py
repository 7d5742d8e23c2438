"""URI -> bytes: ``file://`` under the allowed roots, ``s3://`` and ``oss://`` through S3-compatible endpoints.

Two kinds of failure, because IMM treats them differently:

- :class:`SourceRefused` -- the URI itself is not acceptable (malformed, a refused scheme such as
  ``http://``, a path escaping the allowed roots, a bucket no endpoint is configured for). It is decided
  without reading anything, when the request arrives, and the whole request fails with InvalidArgument.
- :class:`SourceUnreadable` -- the URI is acceptable but the object cannot be read now (missing, a
  directory, permission, the endpoint is down, too large). Only that file fails, with ``reason``.

``Sources.from_settings(settings)`` is the reader; ``check(uri)`` gives a :class:`Location`,
``stat(location)`` what the source says about the object (size, fingerprint), ``read(location)`` its bytes.
"""

from immray.sources.errors import SourceError, SourceRefused, SourceUnreadable
from immray.sources.reader import Sources, sources_for
from immray.sources.types import SourceInfo, SourceObject
from immray.sources.uris import FileLocation, Location, ObjectLocation, parse_uri

__all__ = [
    "FileLocation",
    "Location",
    "ObjectLocation",
    "SourceError",
    "SourceInfo",
    "SourceObject",
    "SourceRefused",
    "SourceUnreadable",
    "Sources",
    "parse_uri",
    "sources_for",
]
