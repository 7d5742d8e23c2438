"""IMM-shaped responses: PascalCase JSON with a ``RequestId``, also sent as the ``x-acs-request-id`` header.

Every answer of the API goes through here, errors included, so none is HTML or empty: the official SDK
turns an empty or non-JSON body into an exception without a code.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from immray.protocol.errors import ImmError

REQUEST_ID_HEADER = "x-acs-request-id"


def new_request_id() -> str:
    """IMM's request ids are upper-case UUIDs."""
    return str(uuid.uuid4()).upper()


def request_id_of(request: Request) -> str:
    """The id of this request, made on first use so errors raised anywhere share it."""
    request_id = getattr(request.state, "request_id", None)
    if request_id is None:
        request_id = request.state.request_id = new_request_id()
    return request_id


def ok_response(request_id: str, fields: Mapping[str, Any] | None) -> JSONResponse:
    """A handler's fields under IMM's envelope; a lower-case key would be dropped by the SDK, so it is a bug."""
    fields = dict(fields or {})
    wrong = [key for key in fields if not (isinstance(key, str) and key[:1].isupper())]
    if wrong:
        raise TypeError(f"response fields must be PascalCase, got {wrong!r}")
    fields.pop("RequestId", None)
    return JSONResponse({"RequestId": request_id, **fields}, headers={REQUEST_ID_HEADER: request_id})


def error_response(
    request_id: str, error: ImmError, host_id: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(
        error.body(request_id, host_id),
        status_code=error.status,
        headers={**(headers or {}), REQUEST_ID_HEADER: request_id},
    )
