"""`immray serve` as a real process: first-start admin key, saved credentials, restart, long request lines."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from alibabacloud_imm20200930 import models
from harness import sdk_client
from live_immray import BACKENDS, database_url_for, unique
from live_server import exchange

from immray.protocol.signing import encode_query, sign

IMMRAY = [sys.executable, "-m", "immray.cli"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Served:
    """One `immray serve` process; ``stop()`` sends SIGTERM and returns what it printed."""

    def __init__(self, data_dir: Path, env: dict[str, str], *args: str) -> None:
        self.port = free_port()
        self.process = subprocess.Popen(
            [*IMMRAY, "serve", "--data-dir", str(data_dir), "--port", str(self.port), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **env},
        )
        deadline = time.monotonic() + 60
        while True:
            if self.process.poll() is not None:
                out, err = self.process.communicate()
                raise AssertionError(f"immray serve exited {self.process.returncode}:\n{out}\n{err}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "immray serve did not start listening"
                time.sleep(0.05)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> tuple[str, str]:
        self.process.send_signal(signal.SIGTERM)
        out, err = self.process.communicate(timeout=30)
        assert self.process.returncode in (0, -signal.SIGTERM), err
        assert "Traceback" not in err
        return out, err


@pytest.fixture(params=BACKENDS)
def environment(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Path, dict[str, str]]:
    data_dir = tmp_path / "data"
    url = database_url_for(request, request.param, data_dir)
    return data_dir, {"IMMRAY_DATABASE_URL": url}


def test_first_start_creates_one_admin_key_and_a_restart_keeps_it(environment):
    data_dir, env = environment
    first = Served(data_dir, env)
    credentials_path = data_dir / "credentials.json"
    try:
        saved = json.loads(credentials_path.read_text())
        assert stat.S_IMODE(credentials_path.stat().st_mode) == 0o600
        assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
        for database in data_dir.glob("immray.db*"):  # SQLite: the secrets are in there too
            assert stat.S_IMODE(database.stat().st_mode) == 0o600, database
        assert saved["Endpoint"] == first.address
        client = sdk_client(first.address, saved["AccessKeyId"], saved["AccessKeySecret"])
        project = unique("served")
        client.create_project(models.CreateProjectRequest(project_name=project))
    finally:
        out, _ = first.stop()
    assert out.count(saved["AccessKeyId"]) == 1 and out.count(saved["AccessKeySecret"]) == 1
    assert "shown this once" in out and str(credentials_path) in out

    second = Served(data_dir, env)
    try:
        again = json.loads(credentials_path.read_text())
        assert again["Endpoint"] == second.address  # the saved endpoint follows the port
        assert (again["AccessKeyId"], again["AccessKeySecret"]) == (
            saved["AccessKeyId"],
            saved["AccessKeySecret"],
        )
        client = sdk_client(second.address, again["AccessKeyId"], again["AccessKeySecret"])
        assert (
            client.get_project(models.GetProjectRequest(project_name=project)).body.project.project_name
            == project
        )
    finally:
        out, _ = second.stop()
    assert "AccessKeySecret" not in out and saved["AccessKeySecret"] not in out

    listed = subprocess.run(
        [*IMMRAY, "keys", "--data-dir", str(data_dir), "list", "--json"],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        check=True,
    )
    rows = json.loads(listed.stdout)
    assert [(row["AccessKeyId"], row["Admin"]) for row in rows] == [(saved["AccessKeyId"], True)]


def test_serve_takes_a_sixty_kib_request_line_and_shows_its_roots(tmp_path: Path):
    photos = tmp_path / "photos"
    photos.mkdir()
    served = Served(tmp_path / "data", {}, "--root", str(photos))
    try:
        saved = json.loads((tmp_path / "data" / "credentials.json").read_text())
        base = len("POST /?" + encode_query({"Padding": "", "Prefix": "p"}) + " HTTP/1.1")
        query = {"Padding": "x" * (60 * 1024 - base), "Prefix": "p"}
        headers = sign(
            access_key_id=saved["AccessKeyId"],
            secret=saved["AccessKeySecret"],
            action="ListProjects",
            host=served.address,
            query=query,
        )
        head = f"POST /?{encode_query(query)} HTTP/1.1\r\n"
        head += "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        head += "content-length: 0\r\nconnection: close\r\n\r\n"
        assert len(head.split("\r\n")[0]) == 60 * 1024
        response = exchange(served.address, [head.encode()[:-4], head.encode()[-4:]])
        assert response.status == 200, response.body
        assert json.loads(response.body)["Projects"] == []
    finally:
        out, _ = served.stop()
    assert f"Allowed roots: {photos.resolve()}" in out


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (("--root", "/no/such/folder"), "not an existing directory"),
        (("--port", "70000"), "70000"),
    ],
)
def test_bad_serve_options_are_clear_errors(tmp_path: Path, args, complaint):
    result = subprocess.run(
        [*IMMRAY, "serve", "--data-dir", str(tmp_path), *args], capture_output=True, text=True, timeout=60
    )
    assert result.returncode in (1, 2) and complaint in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "credentials.json").exists()


def test_a_database_that_cannot_be_opened_is_a_clear_error(tmp_path: Path):
    result = subprocess.run(
        [*IMMRAY, "serve", "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "IMMRAY_DATABASE_URL": "mysql://nobody@localhost/db"},
    )
    assert (
        result.returncode == 1
        and "unsupported database" in result.stderr
        and "Traceback" not in result.stderr
    )
