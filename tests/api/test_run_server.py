"""``run_server`` itself, in its own process: it starts, takes a 60 KiB request line, stops on SIGTERM."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from harness import signed_head
from live_server import exchange


def _unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_until_listening(port: int, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()[1]
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError("run_server did not start listening")


def test_run_server_accepts_a_60_kib_request_line_and_stops_cleanly():
    port = _unused_port()
    script = Path(__file__).with_name("serve_harness.py")
    process = subprocess.Popen(
        [sys.executable, str(script), str(port)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        _wait_until_listening(port, process)
        address = f"127.0.0.1:{port}"
        head = signed_head(address, 60 * 1024)
        response = exchange(address, [head[:-4], head[-4:]])
        assert response.status == 200, response.body
        assert json.loads(response.body)["Project"]["ProjectName"] == "p"
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    # uvicorn shuts down gracefully, then re-raises the signal it caught, so the process ends "by SIGTERM"
    assert process.returncode in (0, -signal.SIGTERM), stderr
    assert "Finished server process" in stderr and "Traceback" not in stderr
