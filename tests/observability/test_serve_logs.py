"""The Serve application's own log files carry immray's lines: one SDK request to the live server, and the
Ingress replica's Serve log (``logs/serve/replica_immray_Ingress_*.log``, what the dashboard's Serve view
shows) has the "request handled" line of that request, with its RequestId and action."""

from __future__ import annotations

import time
from pathlib import Path

from alibabacloud_imm20200930 import models
from live_immray import LiveImmray, unique

from ray_testkit import replica_actors


def serve_logs_dir() -> Path:
    import ray

    return Path(ray._private.worker._global_node.get_logs_dir_path()) / "serve"


def test_a_request_is_logged_in_the_ingress_replicas_serve_log(immray: LiveImmray):
    name = unique("p")
    response = immray.client().create_project(models.CreateProjectRequest(project_name=name))
    request_id = response.body.request_id
    replicas = {replica.name.rsplit("#", 1)[-1] for replica in replica_actors("Ingress")}
    files = [
        path
        for path in serve_logs_dir().glob("replica_immray_Ingress_*.log")
        if path.stem.split("_")[-1] in replicas
    ]
    assert files, f"no Serve log file of the Ingress replicas {replicas} in {serve_logs_dir()}"
    deadline = time.monotonic() + 30
    while True:  # Serve's file handler may buffer a moment
        lines = [line for path in files for line in path.read_text(errors="replace").splitlines()]
        found = [line for line in lines if request_id in line and "request handled" in line]
        if found or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert found, f"no 'request handled' line with {request_id} in {[str(f) for f in files]}"
    assert "CreateProject" in found[-1]
