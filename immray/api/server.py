"""uvicorn configured for IMM's long request lines: Serve's HTTP proxy and the plain-uvicorn servers of the
benchmarks and tests run the API with these settings.

IMM puts every parameter in the URL: a 100-file BatchIndexFileMeta is ~19-60 KiB of request line, and the
spec accepts up to 64 KiB. uvicorn's h11 parser refuses a request head above 16 KiB by default, so the limit
is raised here; a head over it, and the few requests h11 itself refuses, get IMM's JSON error body instead of
plain text, before the head is even complete. No ``server`` header is sent.
"""

from __future__ import annotations

import json
import socket
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from immray.api.responses import REQUEST_ID_HEADER, new_request_id

MAX_REQUEST_LINE = 64 * 1024
# The whole head must fit: the request line plus the SDK's dozen headers, with room to spare.
MAX_REQUEST_HEAD = MAX_REQUEST_LINE + 16 * 1024


class ImmH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, answering malformed or oversized requests in IMM's error format."""

    def send_400_response(self, msg: str) -> None:
        request_id = new_request_id()
        body = json.dumps(
            {
                "RequestId": request_id,
                "HostId": "immray",
                "Code": "InvalidRequest",
                "Message": f"{msg} The request head (request line and headers) may be at most "
                f"{MAX_REQUEST_HEAD} bytes.",
                "Recommend": "",
            }
        ).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (REQUEST_ID_HEADER.encode(), request_id.encode()),
            (b"connection", b"close"),
        ]
        for event in (
            h11.Response(status_code=400, headers=headers),
            h11.Data(data=body),
            h11.EndOfMessage(),
        ):
            self.transport.write(self.conn.send(event))
        self.transport.close()


# What makes a uvicorn server speak as the API (``server_config``; Serve's proxy: immray.serve.proxy).
UVICORN_OPTIONS: dict[str, Any] = {
    "http": ImmH11Protocol,
    "h11_max_incomplete_event_size": MAX_REQUEST_HEAD,
    "server_header": False,
}


def server_config(app: Any, host: str = "127.0.0.1", port: int = 8080, **options: Any) -> uvicorn.Config:
    """uvicorn settings for the API; ``options`` pass through (log_level, proxy_headers, ...)."""
    return uvicorn.Config(app, host=host, port=port, **UVICORN_OPTIONS, **options)


def build_server(app: Any, host: str = "127.0.0.1", port: int = 8080, **options: Any) -> uvicorn.Server:
    return uvicorn.Server(server_config(app, host, port, **options))


def bound_socket(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    """A TCP socket bound to ``host:port`` (0 = any free port) for ``Server.run(sockets=[...])``.

    Created with ``IPPROTO_TCP`` on purpose: asyncio only sets TCP_NODELAY on accepted connections whose
    listening socket says so, and without it every keep-alive request waits ~40 ms for a delayed ACK.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    return sock
