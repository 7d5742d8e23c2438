"""Real Milvus servers for the suite: the `milvus` package's standalone server (``milvus-server``, with
embedded etcd) and ``milvus-lite server``, each on free loopback ports in a directory of its own.

``milvus-server``'s launcher does not pass SIGTERM on to the Milvus binary it runs, so each server is
started in a session of its own and stopped by signalling the whole process group (then SIGKILL)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

_SERVER_PORTS = (
    "etcd-port", "root-coord-port", "proxy-port", "proxy-internal-port", "query-coord-port",
    "query-node-port", "index-coord-port", "index-node-port", "data-coord-port", "data-node-port",
)  # fmt: skip


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _ready(uri: str) -> bool:
    from pymilvus import MilvusClient

    try:
        client = MilvusClient(uri, timeout=5)
        client.list_collections()
        client.close()
        return True
    except Exception:
        return False


@contextlib.contextmanager
def running(command: list[str], port: int, log: Path, timeout: float) -> Iterator[str]:
    """Run a server command until the block ends; yields its URI once it answers."""
    with open(log, "ab") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while not (_answers(port) and _ready(uri)):
            if process.poll() is not None:
                raise RuntimeError(
                    f"{command[0]} exited with {process.returncode}: {log.read_text()[-2000:]}"
                )
            if time.monotonic() > deadline:
                raise RuntimeError(f"{command[0]} did not answer within {timeout:.0f} s: {log}")
            time.sleep(0.5)
        yield uri
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(15)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # the launcher's child, which SIGTERM did not reach
        process.wait(15)


ETCD_PEER_PORT = 2380  # the embedded etcd's peer port, which milvus-server 2.3.5 offers no option to move


def milvus_server(directory: Path, timeout: float = 180.0):
    """The `milvus` package's standalone server on free ports under ``directory``. One runs per host: its
    embedded etcd always listens on port 2380, so a second one fails; that is said at once, not after the
    start timeout."""
    if _answers(ETCD_PEER_PORT):
        raise RuntimeError(
            f"port {ETCD_PEER_PORT} is taken (another milvus-server's embedded etcd?): one milvus-server runs "
            "per host; point the suite at it with IMMRAY_TEST_MILVUS_URI=http://127.0.0.1:<its proxy port>"
        )
    directory.mkdir(parents=True, exist_ok=True)
    ports = {name: free_port() for name in _SERVER_PORTS}
    command = [str(Path(sys.executable).parent / "milvus-server"), "--data", str(directory)]
    for name, port in ports.items():
        command += [f"--{name}", str(port)]
    return running(command, ports["proxy-port"], directory / "server.log", timeout)


def lite_server(directory: Path, timeout: float = 60.0, port: int | None = None):
    """``milvus-lite server`` on ``port`` (default: a free one), its data in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    command = [
        str(Path(sys.executable).parent / "milvus-lite"), "server", "--data-dir", str(directory / "lite.db"),
        "--host", "127.0.0.1", "--port", str(port),
    ]  # fmt: skip
    return running(command, port, directory / "server.log", timeout)
