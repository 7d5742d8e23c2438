"""Serve's HTTP proxy answering as the API's own uvicorn server did (immray.api.server).

Left alone, Serve runs uvicorn in its proxy actor with uvicorn's defaults: the httptools parser, which puts
no limit on a request head (headers may arrive forever; only a URL over 65,535 bytes is refused, and only
once the head is complete), malformed requests answered in plain text, ``server: uvicorn`` on every answer;
Serve adds ``x-request-id`` to every answer, and its own errors (408 past ``request_timeout_s``, 429/503
while no replica can take a request, 404 before the application is deployed, a bare 500 when the replica
died mid-request) are plain text, which the official SDK turns into an exception without an error code.

Serve has no option for any of that. It does call a function of ours in the proxy process before the
proxy's server starts: ``RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH``, set for Serve's controller and the
proxies it starts by ``controller_options.runtime_env.env_vars`` of ``configs/serve.*.yaml`` (the proxy
inherits the controller's environment). ``configure`` is that function. It has uvicorn's ``Config`` build
every server of the proxy process with ``immray.api.server.UVICORN_OPTIONS`` (Serve calls ``uvicorn.Config``
when it starts the server; the proxy process serves nothing else), and returns the middleware that drops
``x-request-id`` and gives the proxy's own errors IMM's JSON body. tests/api/test_api_http.py checks all of
it through the real proxy, so a Serve release that builds its server differently fails there.
"""

from __future__ import annotations

from typing import Any

import uvicorn
from starlette.middleware import Middleware

from immray.api.responses import REQUEST_ID_HEADER, error_response, new_request_id
from immray.api.server import UVICORN_OPTIONS
from immray.protocol.errors import ImmError

HOST_ID = "immray"

# The errors Serve's proxy makes itself (plain text, no x-acs-request-id), as IMM reports such situations.
PROXY_ERRORS = {
    404: ("InvalidPath", "No application answers here yet; the server may still be starting."),
    408: ("RequestTimeout", "The request did not complete within the server's request timeout."),
    429: ("Throttling", "The server is busy; retry later."),
    500: ("InternalError", "The server met an internal error; it is logged."),
    503: ("ServiceUnavailable", "The server cannot take requests right now; retry later."),
}
_SERVE_REQUEST_ID = b"x-request-id"
_IMM_REQUEST_ID = REQUEST_ID_HEADER.encode()


class ImmServerConfig(uvicorn.Config):
    """uvicorn's ``Config`` with the API's settings over whatever its caller (Serve's proxy) passes."""

    def __init__(self, app: Any, **options: Any) -> None:
        super().__init__(app, **{**options, **UVICORN_OPTIONS})


def configure() -> list[Middleware]:
    """The proxy callback: runs in the proxy process before its HTTP server is built."""
    uvicorn.Config = ImmServerConfig  # type: ignore[misc]
    return [Middleware(ImmProxyAnswers)]


class ImmProxyAnswers:
    """Outermost ASGI middleware of the proxy: no ``x-request-id`` on answers, and the proxy's own errors
    (or a request it left unanswered) as IMM JSON errors. Serve's own ``/-/`` routes keep their bodies."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        own_route = scope.get("path", "").startswith("/-/")
        started = replaced = False

        async def send_imm(message: dict) -> None:
            nonlocal started, replaced
            if message["type"] == "http.response.start":
                started = True
                headers = [
                    (k, v) for k, v in message.get("headers", []) if bytes(k).lower() != _SERVE_REQUEST_ID
                ]
                if not own_route and _made_by_the_proxy(message["status"], headers):
                    replaced = True
                    retry_after = {
                        k.decode(): v.decode() for k, v in headers if bytes(k).lower() == b"retry-after"
                    }
                    await _imm_error(message["status"], retry_after)(scope, receive, send)
                    return
                message = {**message, "headers": headers}
            elif replaced:
                return  # the body of the proxy's plain-text error, already answered
            await send(message)

        await self.app(scope, receive, send_imm)
        if not started:  # the replica died mid-request: uvicorn would answer a bare text/plain 500
            await _imm_error(500, {})(scope, receive, send)


def _made_by_the_proxy(status: int, headers: list[tuple[bytes, bytes]]) -> bool:
    """The API answers every error with x-acs-request-id; the proxy's errors are plain text without it."""
    if status not in PROXY_ERRORS:
        return False
    names = {bytes(k).lower(): bytes(v) for k, v in headers}
    return _IMM_REQUEST_ID not in names and names.get(b"content-type", b"").startswith(b"text/plain")


def _imm_error(status: int, headers: dict[str, str]) -> Any:
    code, message = PROXY_ERRORS[status]
    return error_response(new_request_id(), ImmError(code, message, status), HOST_ID, headers=headers)
