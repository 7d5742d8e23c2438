"""What an operator meets around the scale-out mode, without starting workers: clear refusals of
`immray worker` and `immray serve` when the mode is half configured, `immray status`, the
server's /metrics, JSON-lines logs, and how often the sweeper sends an unclaimed task again."""

from __future__ import annotations

import json
import logging
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from alibabacloud_imm20200930 import models as imm
from alibabacloud_tea_openapi.exceptions import ClientException
from click.testing import CliRunner, Result
from prometheus_client.parser import text_string_to_metric_families

from immray.api.bootstrap import build_app
from immray.cli import main
from immray.jobs.celery_backend import SentTasks
from immray.observability.logs import JsonFormatter
from immray.policy import ADMIN_POLICY
from immray.services import access_keys
from immray.services.clustering_task import create_clustering_task
from immray.services.database import Database
from immray.settings import Settings, get_settings
from immray.store import upgrade
from task_testkit import add_dataset, sdk_client, serve


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run(args: list[str], env: dict[str, str]) -> Result:
    get_settings.cache_clear()
    try:
        return CliRunner().invoke(main, args, env=env)
    finally:
        get_settings.cache_clear()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'data' / 'immray.db'}"
    upgrade(url)
    return url


# --- refusals ---------------------------------------------------------------------------------------


def test_worker_needs_a_broker(tmp_path: Path, sqlite_url: str):
    result = run(["worker"], {"IMMRAY_DATA_DIR": str(tmp_path), "IMMRAY_DATABASE_URL": sqlite_url})
    assert result.exit_code == 1 and "needs a broker: set IMMRAY_BROKER_URL" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("command", [["worker"], ["serve", "--port", "1"]])
def test_scale_out_refuses_sqlite(tmp_path: Path, sqlite_url: str, command: list[str]):
    env = {
        "IMMRAY_DATA_DIR": str(tmp_path),
        "IMMRAY_DATABASE_URL": sqlite_url,
        "IMMRAY_BROKER_URL": "redis://127.0.0.1:6379/0",
    }
    result = run(command, env)
    assert result.exit_code == 1, result.output
    assert "needs a PostgreSQL database shared by the server and every worker" in result.output


@pytest.mark.parametrize("scheme", ["redis", "amqp"])
def test_an_unreachable_broker_is_named(tmp_path: Path, scheme: str):
    env = {
        "IMMRAY_DATA_DIR": str(tmp_path),
        "IMMRAY_DATABASE_URL": "postgresql+psycopg://nobody@127.0.0.1:1/none",
        "IMMRAY_BROKER_URL": f"{scheme}://user:secret@127.0.0.1:{closed_port()}/",
    }
    result = run(["worker"], env)
    assert result.exit_code == 1, result.output
    assert f"cannot reach the broker {scheme}://127.0.0.1:" in result.output
    assert "secret" not in result.output


# --- immray status --------------------------------------------------------------------------------


def test_status_of_the_embedded_mode(tmp_path: Path, sqlite_url: str):
    db = Database.connect(sqlite_url)
    try:
        add_dataset(db, "proj", "ds")
        create_clustering_task(db, "proj", "ds")  # no pool runs here: it waits in the task table
    finally:
        db.close()
    env = {"IMMRAY_DATA_DIR": str(tmp_path), "IMMRAY_DATABASE_URL": sqlite_url}
    text = run(["status"], env)
    assert text.exit_code == 0, text.output
    assert text.output.splitlines() == [
        "Mode: embedded (the server's in-process pool runs the jobs)",
        "Tasks: 0 running, 1 waiting",
        "Files pending analysis: 0",
    ]
    as_json = json.loads(run(["status", "--json"], env).output)
    assert (as_json["mode"], as_json["waiting_tasks"], as_json["running_tasks"]) == ("embedded", 1, [])


def test_status_says_when_the_broker_is_down(tmp_path: Path, sqlite_url: str):
    env = {
        "IMMRAY_DATA_DIR": str(tmp_path),
        "IMMRAY_DATABASE_URL": sqlite_url,
        "IMMRAY_BROKER_URL": f"redis://127.0.0.1:{closed_port()}/0",
    }
    result = run(["status"], env)
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert lines[0].startswith("Mode: scale-out (Celery workers, broker redis://127.0.0.1:")
    assert lines[1].startswith("Broker unreachable: ")
    assert "Tasks: 0 running, 0 waiting" in lines


# --- metrics and logs ------------------------------------------------------------------------------------


@pytest.fixture
def embedded_server(tmp_path: Path, sqlite_url: str) -> Iterator[tuple[str, object]]:
    settings = Settings(data_dir=tmp_path, database_url=sqlite_url, worker_threads=1)
    db = Database.connect(sqlite_url)
    admin = access_keys.create_key(db, ADMIN_POLICY, is_admin=True)
    try:
        with serve(build_app(settings, db=db)) as address:
            yield address, sdk_client(address, admin.info.access_key_id, admin.secret)
    finally:
        db.close()


def samples(text: str, name: str) -> dict[tuple, float]:
    return {
        tuple(sorted(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    }


def test_the_server_counts_requests_by_action_and_status(embedded_server):
    address, client = embedded_server
    before = samples(httpx.get(f"http://{address}/metrics").text, "immray_api_requests_total")
    client.create_project(imm.CreateProjectRequest(project_name="metered"))
    with pytest.raises(ClientException):
        client.create_project(imm.CreateProjectRequest(project_name="metered"))  # 409
    httpx.post(f"http://{address}/", headers={"x-acs-action": "NoSuchAction"})  # unsigned: 400
    response = httpx.get(f"http://{address}/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    after = samples(response.text, "immray_api_requests_total")

    def grew(action: str, status: str) -> float:
        key = (("action", action), ("status", status))
        return after.get(key, 0) - before.get(key, 0)

    assert (grew("CreateProject", "200"), grew("CreateProject", "409"), grew("other", "400")) == (1, 1, 1)
    assert not any(dict(key)["action"] == "NoSuchAction" for key in after), "unknown names are not labels"
    families = {family.name for family in text_string_to_metric_families(response.text)}
    assert {"immray_jobs", "immray_photos_analyzed", "immray_faces_found"} <= families


def test_json_log_lines_carry_the_extra_fields():
    formatter = JsonFormatter()
    try:
        raise ValueError("bad photo")
    except ValueError:
        record = logging.getLogger("immray.jobs").makeRecord(
            "immray.jobs",
            logging.ERROR,
            __file__,
            1,
            "job %s %s",
            ("index-file", "failed"),
            exc_info=__import__("sys").exc_info(),
            extra={"job": "index-file", "file_id": 7, "outcome": "failed"},
        )
    line = formatter.format(record)
    assert "\n" not in line
    data = json.loads(line)
    assert data["message"] == "job index-file failed" and data["level"] == "error"
    assert (data["job"], data["file_id"], data["outcome"]) == ("index-file", 7, "failed")
    assert data["logger"] == "immray.jobs" and "ValueError: bad photo" in data["exception"]
    assert data["time"].endswith("+00:00")


# --- the sweeper's resending ---------------------------------------------------------------------------


def test_an_unclaimed_task_is_sent_again_after_growing_waits():
    sent = SentTasks(base_seconds=0.2)
    assert sent.due("t1"), "a task this server never sent is sent at once (its worker may have died)"
    sent.sent("t1")
    assert not sent.due("t1")
    time.sleep(0.25)
    assert sent.due("t1")
    sent.sent("t1")
    time.sleep(0.25)
    assert not sent.due("t1"), "the second wait is twice the first"
    time.sleep(0.2)
    assert sent.due("t1")
    sent.keep_only(set())
    assert sent.due("t1"), "a task claimed meanwhile is forgotten"
