"""`immray serve` as a real process: it starts its own Ray, deploys configs/serve.local.yaml, creates the admin
key on the first start and keeps it on a restart, takes a 60 KiB request line through Serve's proxy, and
stops Serve and its Ray on SIGTERM or SIGINT (even when started with SIGINT ignored, as a script's
background job is).

Each start is a Ray and Serve cold start, so the first start also serves the request-line and roots checks
and the restart the SIGINT one; the test session's own Ray keeps running beside it.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from alibabacloud_imm20200930 import models
from harness import sdk_client
from live_immray import BACKENDS, database_url_for, unique
from live_server import exchange, signed_head

IMMRAY = [sys.executable, "-m", "immray.cli"]
RAY_DAEMONS = ("raylet", "gcs_server")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def descendants(pid: int) -> dict[int, str]:
    """The processes below ``pid`` (pid -> command line), from /proc."""
    parents: dict[int, int] = {}
    commands: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat_line = (entry / "stat").read_text()
            commands[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        parents[int(entry.name)] = int(stat_line.rsplit(")", 1)[1].split()[1])
    found: dict[int, str] = {}
    frontier = [pid]
    while frontier:
        parent = frontier.pop()
        for child, ppid in parents.items():
            if ppid == parent and child not in found:
                found[child] = commands.get(child, "")
                frontier.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


class Served:
    """One `immray serve` process, on its own local Ray; ``stop()`` signals it and returns what it printed."""

    def __init__(self, data_dir: Path, env: dict[str, str], *args: str, sigint_ignored: bool = False) -> None:
        self.port = free_port()
        self.process = subprocess.Popen(
            [*IMMRAY, "serve", "--data-dir", str(data_dir), "--port", str(self.port), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "IMMRAY_RAY_NUM_CPUS": "2", **env},
            # as a script's background job starts it (`immray serve &`): SIGINT inherited ignored
            preexec_fn=_ignore_sigint if sigint_ignored else None,
        )
        self.out: list[str] = []
        self.err: list[str] = []
        self._readers = [
            threading.Thread(target=self._drain, args=(self.process.stdout, self.out), daemon=True),
            threading.Thread(target=self._drain, args=(self.process.stderr, self.err), daemon=True),
        ]
        for reader in self._readers:
            reader.start()
        deadline = time.monotonic() + 300  # a Ray and Serve cold start on a shared machine
        while not any(line.startswith("IMM API on ") for line in self.out):
            if self.process.poll() is not None:
                self._join()
                raise AssertionError(
                    f"immray serve exited {self.process.returncode}:\n{self.stdout}\n{self.stderr}"
                )
            assert time.monotonic() < deadline, f"immray serve did not deploy:\n{self.stdout}\n{self.stderr}"
            time.sleep(0.2)
        self.ray_daemons = {
            pid: command for pid, command in descendants(self.process.pid).items() if _is_ray_daemon(command)
        }

    @staticmethod
    def _drain(stream, lines: list[str]) -> None:
        for line in stream:
            lines.append(line)

    def _join(self) -> None:
        for reader in self._readers:
            reader.join(timeout=30)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def stdout(self) -> str:
        return "".join(self.out)

    @property
    def stderr(self) -> str:
        return "".join(self.err)

    def stop(self, how: signal.Signals = signal.SIGTERM) -> str:
        """Signal the process; it must end with 0, no traceback, and its Ray's daemons gone."""
        self.process.send_signal(how)
        self.process.wait(timeout=180)
        self._join()
        assert self.process.returncode == 0, self.stderr
        assert "Traceback" not in self.stderr, self.stderr
        assert "Stopping..." in self.stdout
        deadline = time.monotonic() + 60
        while any(alive(pid) for pid in self.ray_daemons):
            assert time.monotonic() < deadline, f"Ray left running: {self.ray_daemons}"
            time.sleep(0.2)
        return self.stdout


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _is_ray_daemon(command: str) -> bool:
    return any(f"/{name} " in command or command.startswith(f"{name} ") for name in RAY_DAEMONS)


@pytest.fixture(params=BACKENDS)
def environment(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Path, dict[str, str]]:
    data_dir = tmp_path / "data"
    url = database_url_for(request, request.param, data_dir)
    return data_dir, {"IMMRAY_DATABASE_URL": url}


def test_first_start_creates_the_admin_key_and_a_restart_keeps_it(environment, tmp_path: Path):
    data_dir, env = environment
    photos = tmp_path / "photos"
    photos.mkdir()
    first = Served(data_dir, env, "--root", str(photos))
    credentials_path = data_dir / "credentials.json"
    try:
        assert first.ray_daemons, f"no raylet/gcs_server under immray serve: {descendants(first.process.pid)}"
        saved = json.loads(credentials_path.read_text())
        assert stat.S_IMODE(credentials_path.stat().st_mode) == 0o600
        assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
        for database in data_dir.glob("immray.db*"):  # SQLite: the secrets are in there too
            assert stat.S_IMODE(database.stat().st_mode) == 0o600, database
        assert saved["Endpoint"] == first.address
        client = sdk_client(first.address, saved["AccessKeyId"], saved["AccessKeySecret"])
        project = unique("served")
        client.create_project(models.CreateProjectRequest(project_name=project))

        # a 60 KiB request line through Serve's proxy, answered with the API's headers only
        head = signed_head(
            first.address, saved["AccessKeyId"], saved["AccessKeySecret"], 60 * 1024, ProjectName=project
        )
        response = exchange(first.address, [head[:-4], head[-4:]])
        assert response.status == 200, response.body
        assert json.loads(response.body)["Project"]["ProjectName"] == project
        assert "server" not in response.headers and "x-request-id" not in response.headers

        # the one-time web sign-in link it printed signs in
        link = re.search(r"^Web page: (\S+)", first.stdout, re.MULTILINE)
        assert link and link.group(1).startswith(f"http://{first.address}/ui/signin/"), first.stdout
        signed_in = httpx.get(link.group(1), follow_redirects=False)
        assert signed_in.status_code == 303 and signed_in.cookies, signed_in.text
    finally:
        out = first.stop(signal.SIGTERM)
    assert out.count(saved["AccessKeyId"]) == 1 and out.count(saved["AccessKeySecret"]) == 1
    assert "shown this once" in out and str(credentials_path) in out
    assert f"Allowed roots: {photos.resolve()}" in out
    assert re.search(r"^Ray dashboard: http://127\.0\.0\.1:\d+", out, re.MULTILINE), out

    second = Served(data_dir, env, sigint_ignored=True)  # stopped by SIGINT all the same
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
        out = second.stop(signal.SIGINT)
    assert "AccessKeySecret" not in out and saved["AccessKeySecret"] not in out
    assert "Allowed roots: none (file:// indexing is off)" in out
    assert f"Web page: http://{second.address}/ui/signin/" in out  # the saved key's link

    listed = subprocess.run(
        [*IMMRAY, "keys", "--data-dir", str(data_dir), "list", "--json"],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        check=True,
    )
    rows = json.loads(listed.stdout)
    assert [(row["AccessKeyId"], row["Admin"]) for row in rows] == [(saved["AccessKeyId"], True)]


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
