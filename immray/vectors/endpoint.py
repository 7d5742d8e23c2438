"""Where a process finds Milvus, under milvus-lite's one-process rule.

milvus-lite lets one process open its data directory (a second one fails with ``DataDirLockedError``), and
immray runs in several: the Serve ingress, the analysis replicas, one actor per dataset, the CLI. So:

- ``IMMRAY_MILVUS_URI`` set: every process connects to that Milvus server.
- otherwise the data lives in ``data_dir/milvus/faces.db``. ``immray serve`` (and the test suite's Ray
  runtime) starts a :class:`LiteServer` on it, ``milvus-lite server`` on a free loopback port, before anything
  else runs, writes its address to ``data_dir/milvus/server.json`` and gives the URI to its deployments and
  actors (``milvus_uri`` in their settings). A process that finds that file (the CLI beside a running
  server) connects to it too.
- no server running and no URI: the process opens the file itself (a CLI command, a test that runs the
  services in its own process). :func:`release` closes it again, so the same process may start a server
  on the file afterwards.

A lite server is local to its machine: a Ray cluster of several nodes needs ``IMMRAY_MILVUS_URI``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from immray.settings import Settings

log = logging.getLogger("immray.vectors")

_ENDPOINT = "server.json"
_lock = threading.Lock()
_clients: dict[str, object] = {}


def lite_dir(settings: Settings) -> Path:
    """milvus-lite's data directory of a data directory."""
    return settings.data_dir / "milvus" / "faces.db"


def target(settings: Settings) -> str:
    """The URI (server) or path (this process's own milvus-lite) that ``settings`` reach Milvus by."""
    if settings.milvus_uri:
        return settings.milvus_uri
    running = running_server(settings)
    return running if running is not None else str(lite_dir(settings))


def backend(uri_or_path: str) -> str:
    """``server`` for a URI, ``lite`` for a milvus-lite directory opened in this process."""
    return "server" if "://" in uri_or_path else "lite"


def client(settings: Settings, *, fresh: bool = False):
    """This process's ``MilvusClient`` for ``settings`` (one per target, shared by threads); ``fresh``:
    a new one in place of the held one (whose server went away: it never reconnects by itself)."""
    from immray.vectors.client import import_pymilvus

    MilvusClient = import_pymilvus().MilvusClient  # noqa: N806 - the class, under its own name
    where = target(settings)
    with _lock:
        held = _clients.get(where)
        if held is None or fresh:
            if backend(where) == "lite":
                lite_dir(settings).parent.mkdir(parents=True, exist_ok=True)
            # fresh: a connection of its own; pymilvus shares one per address, and the shared one of a
            # server that went away does not recover when it is back
            held = _clients[where] = MilvusClient(where, dedicated=True) if fresh else MilvusClient(where)
        return held


def release(settings: Settings) -> None:
    """Close this process's own milvus-lite of ``settings`` (if open), freeing the file for a server."""
    where = str(lite_dir(settings))
    with _lock:
        held = _clients.pop(where, None)
    if held is not None:
        with contextlib.suppress(Exception):
            held.close()
    with contextlib.suppress(ImportError):  # closing the client leaves milvus-lite's in-process server up
        from milvus_lite.server_manager import server_manager_instance

        server_manager_instance.release_server(where)


def running_server(settings: Settings) -> str | None:
    """The URI of the lite server serving ``settings``' data directory, if one answers."""
    path = lite_dir(settings).parent / _ENDPOINT
    try:
        info = json.loads(path.read_text())
        host, port, pid = str(info["host"]), int(info["port"]), int(info["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not _alive(pid) or not _answers(host, port):
        return None
    return f"http://{host}:{port}"


class LiteServer:
    """``milvus-lite server`` on a data directory's file, a child of this process, stopped by :meth:`stop`."""

    def __init__(self, settings: Settings, *, start_timeout: float = 60.0) -> None:
        self.settings = settings
        self.start_timeout = start_timeout
        self.process: subprocess.Popen | None = None
        self.uri: str | None = None

    def start(self) -> str:
        """Start the server (or join the one already serving the file); returns its URI."""
        running = running_server(self.settings)
        if running is not None:
            self.uri = running
            return running
        from immray.vectors.registry import forget

        forget(self.settings)
        release(self.settings)  # this process's own handle would lock the server out
        self._launch(_free_port())
        return self.uri

    def keep_alive(self) -> bool:
        """Start the server again, on the same address and file, if it died (the processes using it
        reconnect: ``immray.vectors.resilient``); returns whether it had to."""
        process = self.process
        if process is None or process.poll() is None:
            return False
        log.warning(
            "milvus-lite server exited with %s; starting it again on %s", process.returncode, self.uri
        )
        port = int((self.uri or "").rsplit(":", 1)[1])
        self._launch(port)
        return True

    def _launch(self, port: int) -> None:
        data = lite_dir(self.settings)
        data.parent.mkdir(parents=True, exist_ok=True)
        command = [
            sys.executable, "-c", "import sys; from milvus_lite.cmdline import main; sys.exit(main())", "server",
            "--data-dir", str(data), "--host", "127.0.0.1", "--port", str(port),
        ]  # fmt: skip
        log_path = data.parent / "server.log"
        with open(log_path, "ab") as out:
            self.process = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + self.start_timeout
        while not _answers("127.0.0.1", port):
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"milvus-lite server exited with {self.process.returncode}: see {log_path}"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"milvus-lite server did not answer within {self.start_timeout:.0f} s")
            time.sleep(0.1)
        (data.parent / _ENDPOINT).write_text(
            json.dumps({"host": "127.0.0.1", "port": port, "pid": self.process.pid})
        )
        self.uri = f"http://127.0.0.1:{port}"
        log.info("milvus-lite server on %s serves %s", self.uri, data)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server this object started (a joined one is left to its owner)."""
        process, self.process = self.process, None
        if process is None:
            return
        with contextlib.suppress(FileNotFoundError):
            (lite_dir(self.settings).parent / _ENDPOINT).unlink()
        with _lock:
            held = _clients.pop(self.uri or "", None)
        if held is not None:
            with contextlib.suppress(Exception):
                held.close()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout)

    def __enter__(self) -> LiteServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
