"""``POST /``: the one IMM endpoint. Authenticate, find the action, decode, authorise, then run the handler.

The order is the point: the signature is checked before anything about the request is believed, the
parameters are decoded before the handler sees them, and the policy judges the declared resource before the
handler runs. Handlers therefore hold no auth code. Storage-backed collaborators (secret lookup, nonces,
policy) are plain callables, run in the thread pool because a database may answer them.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from immray.api.actions import ActionRegistry, Authorize, Call
from immray.api.responses import ok_response, request_id_of
from immray.observability import logs
from immray.protocol.errors import ImmError
from immray.protocol.nonces import NonceStore
from immray.protocol.params import collect, parse_params
from immray.protocol.signing import (
    API_VERSION,
    LEGACY_ALGORITHM,
    LEGACY_PROTOCOL_PARAMS,
    HttpRequest,
    SecretLookup,
    Verified,
    parse_query,
    verify,
)

log = logging.getLogger("immray.api")


@dataclass(frozen=True)
class Dispatcher:
    actions: ActionRegistry
    lookup_secret: SecretLookup
    nonces: NonceStore
    authorize: Authorize
    clock: Callable[[], datetime]
    max_body_bytes: int

    async def handle(self, request: Request) -> Response:
        """Answer one IMM request. Every line logged while it is served (here, in the handler, in the
        threads it runs in) carries its ``request_id`` and ``action``; it ends with "request handled"."""
        request_id = request_id_of(request)
        began = time.perf_counter()
        status, code = 500, None
        # The action the header names until the signature confirms one (a legacy request's, in its query).
        claimed = (request.headers.get("x-acs-action") or "")[:128] or None
        with logs.bound(request_id=request_id, action=claimed):
            try:
                incoming = await self._read(request)
                verified = await run_in_threadpool(
                    verify, incoming, self.lookup_secret, self.nonces, self.clock()
                )
                logs.bind(action=(verified.action or "")[:128] or None)
                response = await self._run(request_id, incoming, verified)
                status = response.status_code
                return response
            except ImmError as error:
                status, code = error.status, error.code
                raise
            except Exception:
                log.exception("request %s failed", request_id)
                code = "InternalError"
                raise ImmError.internal_error(request_id) from None
            finally:
                log.info(
                    "request handled",
                    extra={
                        "status": status,
                        **({"code": code} if code else {}),
                        "duration_ms": round((time.perf_counter() - began) * 1000, 1),
                    },
                )

    async def _read(self, request: Request) -> HttpRequest:
        declared = request.headers.get("content-length", "0")
        if not declared.isdigit() or int(declared) > self.max_body_bytes:
            raise ImmError.limit_exceeded(f"The request body must be at most {self.max_body_bytes} bytes.")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > self.max_body_bytes:
                raise ImmError.limit_exceeded(
                    f"The request body must be at most {self.max_body_bytes} bytes."
                )
        try:
            query = request.scope["query_string"].decode("utf-8")
        except UnicodeDecodeError:
            raise ImmError.invalid_argument("The query string is not valid UTF-8.") from None
        headers = tuple(
            (key.decode("latin-1"), value.decode("latin-1")) for key, value in request.headers.raw
        )
        return HttpRequest(request.method, request.url.path, query, headers, bytes(body))

    async def _run(self, request_id: str, incoming: HttpRequest, verified: Verified) -> Response:
        legacy = verified.algorithm == LEGACY_ALGORITHM
        pairs = [*parse_query(incoming.query), *incoming.form_pairs()]
        if legacy:
            version = dict(pairs).get("Version")
            pairs = [(key, value) for key, value in pairs if key not in LEGACY_PROTOCOL_PARAMS]
        else:
            version = incoming.header("x-acs-version")
        if version is not None and version != API_VERSION:
            raise ImmError.invalid_argument(
                f"The API version {version[:32]!r} is not supported; this server speaks IMM {API_VERSION}."
            )
        if not verified.action:
            raise ImmError.invalid_argument(
                "The request names no action: send it in the x-acs-action header."
            )
        action = self.actions.get(verified.action)
        if action is None:
            raise ImmError.unsupported_action(verified.action[:128])

        values = parse_params(action.params, collect(pairs))
        resource = action.resource_of(values)
        allowed = await run_in_threadpool(self.authorize, verified.access_key_id, action.name, resource)
        if not allowed:
            raise ImmError.forbidden(
                f"The access key {verified.access_key_id} may not call {action.name} on {resource.arn}."
            )

        call = Call(action.name, values, resource, verified.access_key_id, request_id)
        if inspect.iscoroutinefunction(action.handler):
            result = await action.handler(call)
        else:
            result = await run_in_threadpool(action.handler, call)
            if inspect.isawaitable(result):
                result = await result
        return ok_response(request_id, result)
