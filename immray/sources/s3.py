"""Objects of S3-compatible stores (``s3://`` and ``oss://``), one configured endpoint per bucket.

boto3 clients are made once per bucket and shared by the worker threads (low-level clients are
thread-safe). Errors the store reports become SourceUnreadable with IMM-like reasons: a missing object is
``[InvalidArgument] File does not exist.``, an endpoint that cannot be reached is ``[SourceUnavailable]``.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from immray.settings import ObjectBucket
from immray.sources.errors import SourceRefused, SourceUnreadable
from immray.sources.types import SourceInfo, SourceObject, guess_content_type
from immray.sources.uris import ObjectLocation

_MISSING = {"404", "NoSuchKey", "NotFound", "NoSuchBucket"}
_DENIED = {"403", "AccessDenied", "Forbidden", "InvalidAccessKeyId", "SignatureDoesNotMatch"}


class ObjectStores:
    def __init__(self, buckets: Mapping[str, ObjectBucket], max_bytes: int) -> None:
        self._buckets = dict(buckets)
        self._max_bytes = max_bytes
        self._clients: dict[str, Any] = {}
        self._lock = threading.Lock()

    def bucket_config(self, location: ObjectLocation) -> tuple[str, ObjectBucket]:
        """The configuration serving ``location`` (``oss://b`` / ``s3://b`` before plain ``b``), or refused."""
        for name in (f"{location.scheme}://{location.bucket}", location.bucket):
            if name in self._buckets:
                return name, self._buckets[name]
        raise SourceRefused(
            location.uri,
            f"no endpoint is configured for the bucket {location.bucket} (the operator lists buckets in "
            "IMMRAY_BUCKETS)",
        )

    def check(self, location: ObjectLocation) -> None:
        self.bucket_config(location)

    def stat(self, location: ObjectLocation) -> SourceInfo:
        head = self._call(location, "head_object")
        return self._info(location, head)

    def read(self, location: ObjectLocation) -> SourceObject:
        got = self._call(location, "get_object")
        info = self._info(location, got)
        body = got["Body"]
        try:
            data = body.read(self._max_bytes + 1)
        except Exception as exc:  # botocore's stream errors have no common base worth naming
            raise SourceUnreadable(
                location.uri, f"reading the object failed: {exc}", "SourceUnavailable"
            ) from None
        finally:
            body.close()
        if len(data) > self._max_bytes:
            raise self._too_large(location)
        return SourceObject(info, data)

    def _info(self, location: ObjectLocation, meta: Mapping[str, Any]) -> SourceInfo:
        size = int(meta.get("ContentLength") or 0)
        if size > self._max_bytes:
            raise self._too_large(location)
        etag = str(meta.get("ETag") or "").strip('"') or None
        declared = meta.get("ContentType")
        content_type = guess_content_type(location.filename)
        if declared and declared not in ("binary/octet-stream", "application/octet-stream"):
            content_type = declared
        modified = meta.get("LastModified")
        return SourceInfo(
            size=size,
            fingerprint=f"{location.scheme}:{size}:{etag or modified}",
            filename=location.filename,
            etag=etag,
            modified_at=modified,
            content_type=content_type,
        )

    def _call(self, location: ObjectLocation, method: str) -> Mapping[str, Any]:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            client = self._client(location)
        except SourceRefused as exc:  # accepted earlier; the configuration changed since
            raise SourceUnreadable(location.uri, exc.message) from None
        try:
            return getattr(client, method)(Bucket=location.bucket, Key=location.key)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            status = str(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
            if code in _MISSING or status == "404":
                raise SourceUnreadable(location.uri, "File does not exist.") from None
            if code in _DENIED or status == "403":
                raise SourceUnreadable(
                    location.uri, f"the endpoint denied access to the object ({code or status})"
                ) from None
            raise SourceUnreadable(
                location.uri,
                f"the endpoint answered {code or status}: {error.get('Message', '')}".rstrip(": "),
                "SourceUnavailable",
            ) from None
        except BotoCoreError as exc:
            raise SourceUnreadable(
                location.uri, f"the bucket's endpoint cannot be reached: {exc}", "SourceUnavailable"
            ) from None

    def _client(self, location: ObjectLocation) -> Any:
        name, config = self.bucket_config(location)
        with self._lock:
            client = self._clients.get(name)
            if client is None:
                client = self._clients[name] = _make_client(config)
            return client

    def _too_large(self, location: ObjectLocation) -> SourceUnreadable:
        return SourceUnreadable(
            location.uri, f"the object is larger than {self._max_bytes} bytes", "FileTooLarge"
        )


def _make_client(config: ObjectBucket) -> Any:
    import boto3
    from botocore.config import Config

    session = boto3.session.Session()
    return session.client(
        "s3",
        endpoint_url=config.endpoint_url,
        aws_access_key_id=config.access_key_id,
        aws_secret_access_key=(
            config.secret_access_key.get_secret_value() if config.secret_access_key is not None else None
        ),
        region_name=config.region or "us-east-1",
        config=Config(
            s3={"addressing_style": config.addressing_style},
            signature_version="s3v4",
            connect_timeout=10,
            read_timeout=60,
            retries={"max_attempts": 3, "mode": "standard"},
        ),
    )
