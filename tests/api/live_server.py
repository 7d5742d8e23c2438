"""A real uvicorn server (immray's settings, as Serve's proxy runs them) on a free 127.0.0.1 port, in a
background thread, and raw HTTP exchanges for what HTTP clients will not send."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import uvicorn

from immray.api import server_config
from immray.api.server import bound_socket
from immray.protocol.signing import encode_query, sign


@contextlib.contextmanager
def serve(app: Any, config: uvicorn.Config | None = None) -> Iterator[str]:
    """Run ``app`` (with immray's server config unless ``config`` is given); yield ``127.0.0.1:PORT``."""
    sock = bound_socket("127.0.0.1", 0)
    port = sock.getsockname()[1]
    server = uvicorn.Server(config or server_config(app, "127.0.0.1", port, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the test server did not start")
            time.sleep(0.01)
        yield f"127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@dataclass(frozen=True)
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes


def exchange(address: str, parts: list[bytes], pause: float = 0.1) -> RawResponse:
    """Write ``parts`` on one connection, pausing between them so the server sees an incomplete request
    head (as it does on a real network, where long lines arrive in many segments); read the reply to EOF.
    HTTP clients such as httpx cap URLs at 64 KiB, so requests at the limit are written by hand."""
    return parse_response(exchange_raw(address, parts, pause))


def exchange_raw(address: str, parts: list[bytes], pause: float = 0.1) -> bytes:
    """``exchange``'s reply as the bytes that came over the wire."""
    host, port = address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=15) as conn:
        for index, part in enumerate(parts):
            if index:
                time.sleep(pause)
            conn.sendall(part)
        received = bytearray()
        while chunk := conn.recv(65536):
            received += chunk
    return bytes(received)


def parse_response(received: bytes) -> RawResponse:
    head, _, body = received.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return RawResponse(int(status_line.split(" ")[1]), headers, body)


def signed_head(
    address: str, key_id: str, secret: str, line_length: int, action: str = "GetProject", **query: str
) -> bytes:
    """A signed request head for ``action`` with ``query`` whose request line (``POST /?... HTTP/1.1``) is
    ``line_length`` bytes, padded by an extra parameter the API ignores."""
    base = len(f"POST /?{encode_query({**query, 'Padding': ''})} HTTP/1.1")
    padded = {**query, "Padding": "x" * (line_length - base)}
    line = f"POST /?{encode_query(padded)} HTTP/1.1"
    assert len(line) == line_length
    headers = sign(access_key_id=key_id, secret=secret, action=action, host=address, query=padded)
    fields = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    return f"{line}\r\n{fields}content-length: 0\r\nconnection: close\r\n\r\n".encode()
