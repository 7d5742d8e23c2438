"""`immray serve` prints a one-time sign-in link for the web page; it signs in once and only once."""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from immray.web.session import COOKIE


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def printed_link(process: subprocess.Popen, seconds: float = 60) -> str:
    """The link on the `Web page:` line serve prints before it listens."""
    deadline = time.monotonic() + seconds
    seen = []
    while time.monotonic() < deadline:
        ready, _, _ = select.select([process.stdout], [], [], 0.5)
        if ready:
            line = process.stdout.readline()
            if not line:
                break
            seen.append(line)
            if line.startswith("Web page: "):
                return line.split()[2]
    raise AssertionError(
        f"no sign-in link printed: {''.join(seen)}{process.stderr.read() if process.poll() is not None else ''}"
    )


def test_serve_prints_a_link_that_signs_in_once(tmp_path: Path):
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "immray.cli",
            "serve",
            "--data-dir",
            str(tmp_path / "data"),
            "--port",
            str(port),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("IMMRAY_")},
    )
    try:
        link = printed_link(process)
        assert link.startswith(f"http://127.0.0.1:{port}/ui/signin/")
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "immray serve did not start listening"
                time.sleep(0.05)
        with httpx.Client() as browser:
            answer = browser.get(link)
            assert answer.status_code == 303 and answer.headers["location"] == "/ui/projects"
            cookie = answer.headers["set-cookie"]
            assert cookie.startswith(f"{COOKIE}=") and "httponly" in cookie.lower()
            page = browser.get(f"http://127.0.0.1:{port}/ui/projects")
            assert page.status_code == 200 and "Projects and datasets" in page.text
        again = httpx.get(link)
        assert again.status_code == 401 and "already used" in again.text
        assert httpx.get(f"http://127.0.0.1:{port}/ui/projects").headers.get("location") == "/ui/signin"
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=30)
    assert "Traceback" not in err
