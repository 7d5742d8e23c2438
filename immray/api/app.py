"""``create_app``: the ASGI application that answers IMM requests.

It wires the dispatcher to ``POST /`` and makes every other outcome an IMM error body too: a wrong path or
method, an ``ImmError`` raised anywhere, and an unexpected exception (500 InternalError, logged here with
its traceback, never sent to the client). Collaborators that will come from the store (access keys, nonces,
policies) are parameters, so tests and the embedded server can pass their own.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from immray.api.actions import ActionRegistry, Authorize, allow_all
from immray.api.dispatch import Dispatcher
from immray.api.responses import error_response, request_id_of
from immray.protocol.errors import ImmError
from immray.protocol.nonces import MemoryNonceStore, NonceStore
from immray.protocol.signing import SecretLookup

log = logging.getLogger("immray.api")

DEFAULT_MAX_BODY_BYTES = 1024 * 1024
IMM_USAGE = "IMM requests are POST / with the action in the x-acs-action header."


def create_app(
    actions: ActionRegistry,
    lookup_secret: SecretLookup,
    *,
    nonces: NonceStore | None = None,
    authorize: Authorize = allow_all,
    clock: Callable[[], datetime] | None = None,
    host_id: str = "immray",
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    lifespan: Callable[[Any], Any] | None = None,
) -> FastAPI:
    """The API server. ``lookup_secret(access_key_id)`` gives a key's secret or None; ``nonces`` defaults to
    a per-process memory store (a multi-process deployment must pass a shared one); ``lifespan`` is the
    ASGI lifespan context (background services start and stop there)."""
    app = FastAPI(title="immray", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    dispatcher = Dispatcher(
        actions=actions,
        lookup_secret=lookup_secret,
        nonces=nonces if nonces is not None else MemoryNonceStore(clock),
        authorize=authorize,
        clock=clock or (lambda: datetime.now(UTC)),
        max_body_bytes=max_body_bytes,
    )
    app.add_route("/", dispatcher.handle, methods=["POST"], include_in_schema=False)
    app.state.actions = actions

    async def on_imm_error(request: Request, error: Exception) -> Response:
        assert isinstance(error, ImmError)
        return error_response(request_id_of(request), error, host_id)

    async def on_http_error(request: Request, error: Exception) -> Response:
        assert isinstance(error, HTTPException)
        if error.status_code == 404:
            imm = ImmError("InvalidPath", f"There is nothing at {request.url.path[:256]}. {IMM_USAGE}", 404)
        elif error.status_code == 405:
            imm = ImmError("MethodNotAllowed", f"{request.method} is not allowed here. {IMM_USAGE}", 405)
        else:
            imm = ImmError("InvalidRequest", str(error.detail), error.status_code)
        return error_response(request_id_of(request), imm, host_id, headers=error.headers)

    async def on_validation_error(request: Request, error: Exception) -> Response:
        return error_response(request_id_of(request), ImmError.invalid_argument(str(error)), host_id)

    async def on_unexpected(request: Request, error: Exception) -> Response:
        request_id = request_id_of(request)
        log.error("request %s failed", request_id, exc_info=error, extra={"request_id": request_id})
        return error_response(request_id, ImmError.internal_error(request_id), host_id)

    app.add_exception_handler(ImmError, on_imm_error)
    app.add_exception_handler(HTTPException, on_http_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(Exception, on_unexpected)
    return app
