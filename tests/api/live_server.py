"""A real uvicorn server on a free 127.0.0.1 port, in a background thread, for tests that speak HTTP."""

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
    host, port = address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=15) as conn:
        for index, part in enumerate(parts):
            if index:
                time.sleep(pause)
            conn.sendall(part)
        received = bytearray()
        while chunk := conn.recv(65536):
            received += chunk
    head, _, body = bytes(received).partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return RawResponse(int(status_line.split(" ")[1]), headers, body)
