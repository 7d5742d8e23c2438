"""What the task machinery and the notification outbox cost: the throughput and latency of a dataset
actor's task runner (``jobs.task_worker.TaskWorker``, here in this process, without Ray's hop) for no-op
tasks, and outbox delivery rates to the real Redis, RabbitMQ and a local webhook.

Prints figures, asserts nothing. Run:
``python -m immray.bench.tasks_notify [--tasks 200] [--messages 300] [--database-url postgresql://...]``
(default: a SQLite file in a temporary directory). Needs Redis on 127.0.0.1:6379 and RabbitMQ on :5672.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pika
import redis
from sqlalchemy import select

from immray.jobs import job
from immray.jobs.submission import install_backend, uninstall_backend
from immray.jobs.task_worker import TaskWorker
from immray.notify import enqueue, envelope
from immray.notify.dispatcher import OutboxDispatcher
from immray.services import tasks
from immray.services.database import Database
from immray.services.tasks import NewTask
from immray.settings import NotifyTopic, Settings
from immray.store import Base, Dataset, Project, Task, TaskStatus, upgrade, utcnow

AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/%2F"


@job("bench.noop", task=True)
def noop(ctx, payload):
    return {"Done": True}


@contextlib.contextmanager
def running_worker(db: Database, settings: Settings) -> Iterator[TaskWorker]:
    """A dataset actor's runner, as the job backend of this process."""
    worker = TaskWorker(db, settings, owner=f"bench-{uuid.uuid4().hex[:8]}")
    worker.start()
    install_backend(worker)
    try:
        yield worker
    finally:
        uninstall_backend(worker)
        worker.stop()


def bench_pool(db: Database, settings: Settings, count: int, serial: bool) -> None:
    with running_worker(db, settings):
        started = time.perf_counter()
        records = [
            tasks.start_task(
                db,
                NewTask(
                    project_name="bench",
                    dataset_name="ds",
                    task_type="FaceClustering",
                    job_name="bench.noop",
                    serial_key="dataset:bench" if serial else None,
                ),
            )
            for _ in range(count)
        ]
        submitted = time.perf_counter() - started
        ids = [record.task_id for record in records]
        while True:
            with db.read() as session:
                left = session.scalar(
                    select(Task.id).where(Task.task_id.in_(ids), Task.status == TaskStatus.RUNNING).limit(1)
                )
            if left is None:
                break
            time.sleep(0.01)
        elapsed = time.perf_counter() - started
        with db.read() as session:
            rows = session.execute(select(Task.start_time, Task.end_time).where(Task.task_id.in_(ids))).all()
        latencies = sorted((end - start).total_seconds() * 1000 for start, end in rows)
    label = "one serial key" if serial else "independent"
    print(
        f"task runner, {count} no-op tasks ({label}, one task thread): "
        f"{count / elapsed:7.1f} tasks/s end to end, creation {count / submitted:7.1f} tasks/s, "
        f"latency create->end median {statistics.median(latencies):6.1f} ms, "
        f"p95 {latencies[int(0.95 * (len(latencies) - 1))]:6.1f} ms"
    )


def bench_pickup(db: Database, settings: Settings, count: int) -> None:
    """One task at a time: how long an idle runner takes from creation to the task's end."""
    latencies = []
    with running_worker(db, settings):
        for _ in range(count):
            started = time.perf_counter()
            record = tasks.start_task(
                db, NewTask(project_name="bench", task_type="FaceClustering", job_name="bench.noop")
            )
            while tasks.get_task(db, "bench", "FaceClustering", record.task_id, retention_days=7).status == (
                TaskStatus.RUNNING
            ):
                time.sleep(0.001)
            latencies.append((time.perf_counter() - started) * 1000)
    print(
        f"task runner, idle, {count} tasks one after another: create->seen ended median "
        f"{statistics.median(latencies):6.1f} ms, max {max(latencies):6.1f} ms"
    )


def bench_delivery(db: Database, settings: Settings, topic: str, count: int) -> None:
    with db.write() as session:
        for number in range(count):
            message = envelope(
                message_id=str(uuid.uuid4()),
                event_type="imm:Task:FigureClustering",
                project_name="bench",
                content={"TaskId": f"FaceClustering-{number}", "Status": "Succeeded"},
                at=utcnow(),
            )
            enqueue(session, topic=topic, message=message)
    dispatcher = OutboxDispatcher(db, settings)
    started = time.perf_counter()
    sent = 0
    while tried := dispatcher.run_once():
        sent += tried
    elapsed = time.perf_counter() - started
    dispatcher.stop()
    print(f"outbox -> {topic:8s}: {sent} messages, {sent / elapsed:7.1f} messages/s (one dispatcher)")


class _Quiet(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        url = args.database_url or f"sqlite:///{Path(tmp) / 'bench.db'}"
        upgrade(url)
        db = Database.connect(url)
        with db.write() as session:
            for table in reversed(Base.metadata.sorted_tables):
                session.execute(table.delete())
            session.add(Dataset(project=Project(name="bench"), name="ds"))
        webhook = ThreadingHTTPServer(("127.0.0.1", 0), _Quiet)
        threading.Thread(target=webhook.serve_forever, daemon=True).start()
        stream, queue = f"immray-bench-{uuid.uuid4().hex}", f"immray-bench-{uuid.uuid4().hex}"
        channel = pika.BlockingConnection(pika.URLParameters(AMQP_URL)).channel()
        channel.queue_declare(queue)
        settings = Settings(
            data_dir=Path(tmp),
            database_url=url,
            task_poll_seconds=0.5,
            notify_topics={
                "redis": NotifyTopic(url="redis://127.0.0.1:6379/0", stream=stream),
                "rabbitmq": NotifyTopic(url=AMQP_URL, queue=queue),
                "webhook": NotifyTopic(
                    url=f"http://127.0.0.1:{webhook.server_address[1]}/", secret="bench secret"
                ),
            },
        )
        print(f"database: {db.engine.dialect.name}")
        try:
            bench_pickup(db, settings, 30)
            bench_pool(db, settings, args.tasks, serial=False)
            bench_pool(db, settings, args.tasks // 4, serial=True)
            for topic in ("redis", "rabbitmq", "webhook"):
                bench_delivery(db, settings, topic, args.messages)
        finally:
            redis.Redis().delete(stream)
            channel.queue_delete(queue)
            channel.connection.close()
            webhook.shutdown()
            db.close()


if __name__ == "__main__":
    main()
