"""A task cut short by killing the server (SIGKILL) runs again after a restart and ends Succeeded."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import redis
import task_jobs  # noqa: F401  (the task is created here, so its job must be known here too)
from alibabacloud_imm20200930 import models as imm
from sqlalchemy import select

from immray.policy import ADMIN_POLICY
from immray.services import access_keys, tasks
from immray.services.tasks import NewTask
from immray.store import Task
from task_testkit import add_dataset, sdk_client, wait_for

SCRIPT = Path(__file__).with_name("task_server_process.py")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


@contextlib.contextmanager
def server_process(env: dict[str, str], cwd: Path) -> Iterator[tuple[subprocess.Popen, int]]:
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, str(SCRIPT), str(port)], env=env, cwd=cwd, stderr=subprocess.PIPE, text=True
    )
    try:
        wait_for("the server process to listen", lambda: process.poll() is not None or _listening(port), 60)
        assert process.poll() is None, process.communicate()[1]
        yield process, port
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=30)


def test_a_task_cut_short_by_sigkill_runs_again_after_restart(db, db_url, tmp_path):
    add_dataset(db)
    admin = access_keys.create_key(db, ADMIN_POLICY, is_admin=True)
    stream = f"immray-restart-{tmp_path.name}"
    env = {
        **os.environ,
        "IMMRAY_DATA_DIR": str(tmp_path),
        "IMMRAY_DATABASE_URL": db_url,
        "IMMRAY_WORKER_THREADS": "1",
        "IMMRAY_TASK_LEASE_SECONDS": "1",
        "IMMRAY_TASK_POLL_SECONDS": "0.1",
        "IMMRAY_NOTIFY_POLL_SECONDS": "0.1",
        "IMMRAY_NOTIFY_TOPICS": json.dumps(
            {"done": {"url": "redis://127.0.0.1:6379/0", "stream": stream}}
        ),
    }
    record = tasks.start_task(
        db,
        NewTask(
            project_name="proj",
            dataset_name="ds",
            task_type="FaceClustering",
            job_name="test.work",
            job_payload={"hang_on": [1], "steps": 2},
            notification={"MNS": {"TopicName": "done"}},
        ),
    )
    request = imm.GetTaskRequest(project_name="proj", task_type="FaceClustering", task_id=record.task_id)
    try:
        with server_process(env, tmp_path) as (process, port):
            client = sdk_client(f"127.0.0.1:{port}", admin.info.access_key_id, admin.secret)
            running = wait_for(
                "the first run", lambda: (b := client.get_task(request).body).progress == 10 and b
            )
            assert running.status == "Running"
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=30)
        with db.read() as session:
            left = session.scalars(select(Task)).one()
            assert (left.status, left.attempts, left.lease_owner is not None) == ("Running", 1, True)

        with server_process(env, tmp_path) as (process, port):
            client = sdk_client(f"127.0.0.1:{port}", admin.info.access_key_id, admin.secret)
            done = wait_for(
                "the second run", lambda: (b := client.get_task(request).body).status != "Running" and b
            )
            assert (done.status, done.progress) == ("Succeeded", 100)
            message = wait_for("the notification", lambda: redis.Redis().xrange(stream))
            process.send_signal(signal.SIGTERM)
            _, stderr = process.communicate(timeout=30)
        assert process.returncode in (0, -signal.SIGTERM) and "Traceback" not in stderr, stderr
    finally:
        redis.Redis().delete(stream)
    assert tasks.get_task(db, "proj", "FaceClustering", record.task_id, retention_days=7).result == {
        "Attempt": 2,
        "Echo": None,
    }
    assert len(message) == 1
    assert json.loads(message[0][1][b"content"])["Status"] == "Succeeded"
