"""A scale-out deployment for the tests: the real server (build_app) in this process, Celery workers as
processes of their own, the real PostgreSQL, and Redis or RabbitMQ, all on this machine.

Each deployment has its own database and its own broker namespace (queues, control exchange, Redis key
prefix), so runs of the suite side by side never take each other's jobs. Workers log JSON lines to a file
each; the tests read them to see which worker process ran which job, with what outcome and when.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
from alibabacloud_imm20200930 import models as imm
from alibabacloud_imm20200930.client import Client

from immray.api.bootstrap import build_app
from immray.jobs.celery_app import Queues, make_celery
from immray.policy import ADMIN_POLICY
from immray.services import access_keys
from immray.services.database import Database
from immray.settings import Settings
from photo_testkit import TEST_DETECTOR
from task_testkit import sdk_client, serve

BROKERS = {"redis": "redis://127.0.0.1:6379/0", "amqp": "amqp://guest:guest@127.0.0.1:5672//"}
WORKER_SCRIPT = Path(__file__).with_name("worker_process.py")
WAIT_SECONDS = 240.0
T = TypeVar("T")


def wait_for(
    what: str, probe: Callable[[], T | None], timeout: float = WAIT_SECONDS, every: float = 0.1
) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(every)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Worker:
    """One `immray worker` process (its own process group, so a kill takes its children too)."""

    name: str
    process: subprocess.Popen
    log: Path
    metrics_port: int

    @property
    def node(self) -> str:
        return f"{self.name}@scaleout-test"

    def records(self) -> list[dict[str, Any]]:
        found = []
        for line in self.log.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                with contextlib.suppress(ValueError):
                    found.append(json.loads(line))
        return found

    def jobs(self, job: str | None = None) -> list[dict[str, Any]]:
        """The jobs this worker ran to an end: job, task_id or file_id, outcome, seconds, time, worker."""
        return [r for r in self.records() if "outcome" in r and (job is None or r.get("job") == job)]

    def ready(self) -> bool:
        messages = [r.get("message", "") for r in self.records()]
        return any(m.endswith(" ready.") for m in messages) and any(
            m.startswith("worker process ") and m.endswith(" ready") for m in messages
        )

    def metrics(self) -> str:
        return httpx.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10).text

    def kill(self) -> None:
        """SIGKILL the whole worker, main process and children at once: a machine that died."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        """A warm shutdown (SIGTERM), then SIGKILL for what is left."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=30)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)


@dataclass
class Deployment:
    broker: str
    settings: Settings
    env: dict[str, str]
    db: Database
    client: Client
    address: str
    folder: Path
    holds: Path
    logs: Path
    workers: dict[str, Worker] = field(default_factory=dict)
    retired: list[Worker] = field(default_factory=list)  # killed or stopped: their logs still count

    # --- workers ------------------------------------------------------------------------------------

    def start_worker(self, name: str, *, wait: bool = True) -> Worker:
        log = self.logs / f"{name}-{len(self.retired)}.log"
        port = free_port()
        with log.open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, str(WORKER_SCRIPT), name, "--concurrency", "1", "--metrics-port", str(port)],
                env=self.env,
                cwd=self.logs,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        worker = Worker(name, process, log, port)
        self.workers[name] = worker
        if wait:
            self.wait_ready(worker)
        return worker

    def wait_ready(self, worker: Worker) -> None:
        def probe() -> bool:
            if worker.process.poll() is not None:
                raise AssertionError(f"worker {worker.name} exited:\n{worker.log.read_text()[-3000:]}")
            return worker.ready()

        wait_for(f"worker {worker.name} to be ready", probe, timeout=120)

    def ensure_workers(self, *names: str) -> None:
        """The named workers running and ready (one that exited is started again)."""
        for name in names:
            worker = self.workers.get(name)
            if worker is None or worker.process.poll() is not None:
                if worker is not None:
                    self.retired.append(worker)
                self.start_worker(name, wait=False)
        for name in names:
            self.wait_ready(self.workers[name])

    def kill(self, name: str, *, restart: bool = True) -> Worker:
        """SIGKILL worker ``name``; a new one of that name starts meanwhile (``ensure_workers`` waits).

        The holds set for the killed process are lifted first: its successor reads the same hold files,
        and would otherwise stop forever on the very job it was handed back (a flaky hang on Redis, where
        the new process is often ready before the job is delivered again)."""
        worker = self.workers.pop(name)
        worker.kill()
        for path in self.holds.glob(f"{name}.*"):
            path.unlink(missing_ok=True)
        self.retired.append(worker)
        if restart:
            self.start_worker(name, wait=False)
        return worker

    def all_jobs(self, job: str | None = None) -> list[dict[str, Any]]:
        return [r for w in [*self.retired, *self.workers.values()] for r in w.jobs(job)]

    # --- holds and routing ------------------------------------------------------------------------------

    def hold(self, name: str, stage: str) -> None:
        (self.holds / f"{name}.{stage}").touch()

    def release(self, name: str, stage: str) -> None:
        (self.holds / f"{name}.{stage}").unlink(missing_ok=True)

    def holding(self, name: str, stage: str) -> dict[str, Any] | None:
        marker = self.holds / f"{name}.{stage}.holding"
        try:
            return json.loads(marker.read_text())
        except (OSError, ValueError):
            return None

    def clear_holds(self) -> None:
        for path in self.holds.iterdir():
            path.unlink(missing_ok=True)

    def consume_tasks(self, name: str, consume: bool) -> None:
        """Let worker ``name`` take clustering tasks or not (Celery's add/cancel_consumer)."""
        app = make_celery(self.settings)
        try:
            queue = Queues.of(self.settings).tasks
            node = self.workers[name].node
            if consume:
                replies = app.control.add_consumer(queue, destination=[node], reply=True, timeout=10)
            else:
                replies = app.control.cancel_consumer(queue, destination=[node], reply=True, timeout=10)
            assert replies and node in replies[0], replies
        finally:
            app.close()

    # --- the API ----------------------------------------------------------------------------------------

    def new_dataset(self, min_faces: int | None = None) -> tuple[str, str]:
        suffix = uuid.uuid4().hex[:8]
        project, dataset = f"p{suffix}", f"d{suffix}"
        self.client.create_project(imm.CreateProjectRequest(project_name=project))
        parameters = (
            [imm.WorkflowParameter(name="FigureClusterMinFaces", value=str(min_faces))] if min_faces else None
        )
        self.client.create_dataset(
            imm.CreateDatasetRequest(
                project_name=project, dataset_name=dataset, workflow_parameters=parameters
            )
        )
        return project, dataset

    def index(self, project: str, dataset: str, uris: list[str]) -> None:
        self.client.batch_index_file_meta(
            imm.BatchIndexFileMetaRequest(
                project_name=project, dataset_name=dataset, files=[imm.InputFile(uri=uri) for uri in uris]
            )
        )

    def files(self, project: str, dataset: str, uris: list[str]) -> dict[str, imm.File]:
        body = self.client.batch_get_file_meta(
            imm.BatchGetFileMetaRequest(project_name=project, dataset_name=dataset, uris=uris)
        ).body
        return {file.uri: file for file in body.files}

    def wait_indexed(self, project: str, dataset: str, uris: list[str]) -> dict[str, imm.File]:
        def done() -> dict[str, imm.File] | None:
            files = self.files(project, dataset, uris)
            return files if all(f.object_status != "Pending" for f in files.values()) else None

        files = wait_for("the analysis of every file", done)
        failed = {
            uri: (f.object_status, f.reason) for uri, f in files.items() if f.object_status != "Indexed"
        }
        assert not failed, failed
        return files

    def start_clustering(self, project: str, dataset: str) -> str:
        return self.client.create_figure_clustering_task(
            imm.CreateFigureClusteringTaskRequest(project_name=project, dataset_name=dataset)
        ).body.task_id

    def task(self, project: str, task_id: str) -> imm.GetTaskResponseBody:
        return self.client.get_task(
            imm.GetTaskRequest(project_name=project, task_type="FaceClustering", task_id=task_id)
        ).body

    def wait_task(self, project: str, task_id: str) -> imm.GetTaskResponseBody:
        return wait_for(
            f"task {task_id} to end",
            lambda: (body := self.task(project, task_id)).status != "Running" and body,
        )

    def people(self, project: str, dataset: str) -> list[imm.FigureCluster]:
        return self.client.query_figure_clusters(
            imm.QueryFigureClustersRequest(project_name=project, dataset_name=dataset, max_results=100)
        ).body.figure_clusters


@contextlib.contextmanager
def deployment(
    broker: str, database_url: str, workdir: Path, folder: Path, **settings: Any
) -> Iterator[Deployment]:
    """A server on ``database_url`` (migrated here) sending jobs through ``broker``; no worker yet."""
    namespace = f"fgtest-{uuid.uuid4().hex[:10]}"
    holds, logs, data = workdir / "holds", workdir / "logs", workdir / "data"
    for path in (holds, logs, data):
        path.mkdir(parents=True, exist_ok=True)
    values: dict[str, Any] = {
        "data_dir": data,
        "database_url": database_url,
        "broker_url": BROKERS[broker],
        "broker_namespace": namespace,
        "broker_visibility_timeout": 10.0,
        "allowed_roots": [folder],
        "min_face_px": 80,  # the test photos' faces are 90 px and more: no upsampling, a faster suite
        "detector": TEST_DETECTOR,  # HOG alone: photo_testkit says why
        "task_lease_seconds": 3.0,
        "task_poll_seconds": 0.2,
        "log_format": "json",
        **settings,
    }
    config = Settings(**values)
    env = {
        **{key: value for key, value in os.environ.items() if not key.startswith("IMMRAY_")},
        **{f"IMMRAY_{key.upper()}": _env_value(value) for key, value in values.items()},
        "IMMRAY_TEST_HOLDS": str(holds),
    }
    db = Database.connect(database_url, migrate=True)
    admin = access_keys.create_key(db, ADMIN_POLICY, is_admin=True)
    found: Deployment | None = None
    try:
        with serve(build_app(config, db=db)) as address:
            client = sdk_client(address, admin.info.access_key_id, admin.secret)
            found = Deployment(broker, config, env, db, client, address, folder, holds, logs)
            yield found
    finally:
        if found is not None:
            found.clear_holds()
            for worker in found.workers.values():
                worker.kill()  # a warm shutdown would only make the suite wait
        _forget_broker_state(config)
        db.close()


def _env_value(value: Any) -> str:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, list | dict):
        return json.dumps(value, default=str)
    return str(value)


def _forget_broker_state(settings: Settings) -> None:
    """Delete the namespace's queues (RabbitMQ keeps durable queues) or keys (Redis)."""
    namespace = settings.broker_namespace
    if settings.broker_url and settings.broker_url.startswith("redis"):
        import redis

        client = redis.Redis.from_url(settings.broker_url)
        keys = list(client.scan_iter(f"{namespace}:*"))
        if keys:
            client.delete(*keys)
        return
    app = make_celery(settings)
    try:
        with app.connection_for_write() as connection:
            for queue in Queues.of(settings).names:
                channel = connection.channel()
                with contextlib.suppress(Exception):
                    channel.queue_delete(queue)
                with contextlib.suppress(Exception):
                    channel.close()
            names = Queues.of(settings).names  # Celery declares an exchange of the same name per queue
            for exchange in (*names, namespace, f"{namespace}.pidbox", f"reply.{namespace}.pidbox"):
                channel = connection.channel()
                with contextlib.suppress(Exception):
                    channel.exchange_delete(exchange)
                with contextlib.suppress(Exception):
                    channel.close()
    finally:
        app.close()
