"""Indexing throughput of the whole service: photos/s through the API, embedded pool and Celery workers.

    python -m immray.bench.throughput_api ../shared/eval/dev --limit 200 \
        --postgres postgresql+psycopg://postgres@127.0.0.1:5432/postgres \
        --broker redis://127.0.0.1:6379/0
    (also: python -m immray.bench.throughput --api ...)

Each mode gets a new database and a new server (build_app on uvicorn, in this process), and the photos go
through the IMM API as a user sends them: BatchIndexFileMeta with 100 file:// URIs per request, signed. The
clock runs from the first request until no photo is Pending, so it covers the requests, the queue (the
broker for Celery), reading, decoding, the face pipeline and the writes. The face models are loaded before
the clock starts: each Celery worker is started and waited for, and a warm-up batch (two photos per core,
in a dataset of its own) is indexed first, which also starts the embedded pool's analysis processes.

- ``embedded``: the default deployment, SQLite and the in-process pool with one thread (and one analysis
  process) per core;
- ``celery-1`` / ``celery-2``: PostgreSQL (a scratch database, dropped after) and 1 or 2 `immray worker`
  processes of one process each, each with one OpenBLAS thread (a machine of one core).

The reference is raw dlib per core: `python -m immray.bench.throughput`'s ``DlibDirect`` (the same detector, landmark, chip
and descriptor calls with no immray code) on the same photos in this process, one core, measured before
and after the modes (the mean is used: other programs' load moves both alike). The ratio printed is
photos/s / (raw photos/s per core x cores the mode uses).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.pool import NullPool

from immray.api.bootstrap import build_app  # noqa: E402
from immray.api.server import bound_socket, build_server  # noqa: E402
from immray.client import ImmClient  # noqa: E402
from immray.faces.config import DETECTORS  # noqa: E402
from immray.policy import ADMIN_POLICY  # noqa: E402
from immray.services import access_keys  # noqa: E402
from immray.services.database import Database  # noqa: E402
from immray.settings import Settings  # noqa: E402
from immray.store import Dataset, File, ObjectStatus, make_engine, normalize_url  # noqa: E402
from immray.bench.throughput import DlibDirect, find_images

BATCH = 100


@contextmanager
def running_server(settings: Settings, db: Database):
    sock = bound_socket("127.0.0.1", 0)
    server = build_server(build_app(settings, db=db), "127.0.0.1", sock.getsockname()[1], log_level="warning")
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("the server did not start")
        time.sleep(0.05)
    try:
        yield f"127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(60)
        sock.close()


@contextmanager
def scratch_postgres(admin_url: str):
    admin = make_engine(admin_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    name = f"immray_bench_{uuid.uuid4().hex[:10]}"
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield normalize_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


@contextmanager
def celery_workers(settings: Settings, count: int, logs: Path):
    """``count`` `immray worker` processes of one process each, ready (models loaded) when this yields."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMMRAY_")}
    env |= {
        "IMMRAY_DATABASE_URL": settings.resolved_database_url,
        "IMMRAY_BROKER_URL": settings.broker_url or "",
        "IMMRAY_BROKER_NAMESPACE": settings.broker_namespace,
        "IMMRAY_ALLOWED_ROOTS": json.dumps([str(root) for root in settings.allowed_roots]),
        "IMMRAY_DATA_DIR": str(settings.data_dir),
        "IMMRAY_DETECTOR": settings.detector,
        "OPENBLAS_NUM_THREADS": "1",  # each worker stands for a machine of one core
        "IMMRAY_LOG_FORMAT": "json",
    }
    processes = []
    try:
        for number in range(count):
            log = logs / f"worker-{number}.log"
            with log.open("wb") as out:
                processes.append(
                    (
                        subprocess.Popen(
                            [
                                sys.executable,
                                "-m",
                                "immray.cli",
                                "worker",
                                "-c",
                                "1",
                                "-n",
                                f"bench{number}@%h",
                            ],
                            env=env,
                            stdout=out,
                            stderr=subprocess.STDOUT,
                            start_new_session=True,
                        ),
                        log,
                    )
                )
        for process, log in processes:
            while '"worker process ' not in log.read_text(errors="replace"):
                if process.poll() is not None:
                    raise RuntimeError(f"a worker exited:\n{log.read_text()[-2000:]}")
                time.sleep(0.2)
        yield
    finally:
        for process, _ in processes:
            process.terminate()
        for process, _ in processes:
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()


WARMUP = "warmup"


def index_all(address: str, key, files: list[Path], db: Database) -> float:
    """Seconds from the first BatchIndexFileMeta until no photo is Pending, after a warm-up: a few photos
    indexed into a dataset of their own first, so every process that analyses photos has started and
    loaded its models (the embedded pool starts its analysis processes at the first photo)."""
    project = f"bench{uuid.uuid4().hex[:6]}"
    with ImmClient(address, key.info.access_key_id, key.secret, timeout=120) as client:
        client.call("CreateProject", {"ProjectName": project})
        for dataset in (WARMUP, "photos"):
            client.call("CreateDataset", {"ProjectName": project, "DatasetName": dataset})
        warmup = files[: 2 * (os.cpu_count() or 1)]
        client.call(
            "BatchIndexFileMeta",
            {"ProjectName": project, "DatasetName": WARMUP, "Files": [{"URI": p.as_uri()} for p in warmup]},
        )
        wait_until_none_pending(db)
        began = time.perf_counter()
        for start in range(0, len(files), BATCH):
            batch = [{"URI": path.as_uri()} for path in files[start : start + BATCH]]
            client.call(
                "BatchIndexFileMeta", {"ProjectName": project, "DatasetName": "photos", "Files": batch}
            )
    wait_until_none_pending(db)
    return time.perf_counter() - began


def wait_until_none_pending(db: Database) -> None:
    while True:
        with db.read() as session:
            pending = session.scalar(
                select(func.count(File.id)).where(File.object_status == ObjectStatus.PENDING)
            )
        if not pending:
            return
        time.sleep(0.1)


def count_outcomes(db: Database) -> tuple[int, int, int]:
    """Indexed, failed and faces of the measured dataset (not the warm-up's)."""
    measured = File.dataset_id.in_(select(Dataset.id).where(Dataset.name != WARMUP))
    with db.read() as session:
        indexed = session.scalar(
            select(func.count(File.id)).where(measured, File.object_status == ObjectStatus.INDEXED)
        )
        failed = session.scalar(
            select(func.count(File.id)).where(measured, File.object_status == ObjectStatus.FAILED)
        )
        faces = session.scalar(select(func.coalesce(func.sum(File.figure_count), 0)).where(measured))
    return indexed, failed, faces


def run_mode(mode: str, files: list[Path], root: Path, args, work: Path) -> tuple[float, int, int, int]:
    data = work / mode
    data.mkdir()
    common = {"data_dir": data, "allowed_roots": [root], "detector": args.detector}
    if mode == "embedded":
        settings = Settings(**common, worker_threads=args.cores)
        db = Database.connect(settings.resolved_database_url, migrate=True)
        key = access_keys.create_key(db, ADMIN_POLICY, is_admin=True)
        try:
            with running_server(settings, db) as address:
                seconds = index_all(address, key, files, db)
            return (seconds, *count_outcomes(db))
        finally:
            db.close()
    workers = int(mode.rsplit("-", 1)[1])
    with scratch_postgres(args.postgres) as url:
        settings = Settings(
            **common,
            database_url=url,
            broker_url=args.broker,
            broker_namespace=f"bench-{uuid.uuid4().hex[:8]}",
        )
        db = Database.connect(url, migrate=True)
        key = access_keys.create_key(db, ADMIN_POLICY, is_admin=True)
        try:
            with running_server(settings, db) as address, celery_workers(settings, workers, data):
                seconds = index_all(address, key, files, db)
            return (seconds, *count_outcomes(db))
        finally:
            db.close()
            forget_namespace(settings)


def forget_namespace(settings: Settings) -> None:
    """Leave nothing of this run in the broker: its Redis keys, or its RabbitMQ queues and exchanges."""
    from immray.jobs.celery_app import Queues, make_celery

    if (settings.broker_url or "").startswith("redis"):
        import redis

        client = redis.Redis.from_url(settings.broker_url)
        keys = list(client.scan_iter(f"{settings.broker_namespace}:*"))
        if keys:
            client.delete(*keys)
        return
    app = make_celery(settings)
    try:
        with app.connection_for_write() as connection:
            channel = connection.channel()
            for name in Queues.of(settings).names:
                channel.queue_delete(name)
            namespace = settings.broker_namespace
            for name in (*Queues.of(settings).names, f"{namespace}.pidbox", f"reply.{namespace}.pidbox"):
                channel.exchange_delete(name)
    finally:
        app.close()


def raw_dlib(files: list[Path], detector: str) -> float:
    """Seconds for raw dlib on one core (OpenBLAS limited to one thread)."""
    from threadpoolctl import threadpool_limits

    pipeline = DlibDirect(detector)
    with threadpool_limits(limits=1, user_api="blas"):
        began = time.perf_counter()
        for path in files:
            pipeline.faces(path)
        return time.perf_counter() - began


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "directory", type=Path, help="an evaluation folder (its photos are found recursively)"
    )
    parser.add_argument("--limit", type=int, default=200, help="use the first N photos (sorted by path)")
    parser.add_argument("--modes", default="embedded,celery-1,celery-2", help="comma-separated")
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 1, help="threads of the embedded pool")
    parser.add_argument(
        "--postgres",
        default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres",
        help="a PostgreSQL URL allowed to create the scratch databases of the Celery modes",
    )
    parser.add_argument("--broker", default="redis://127.0.0.1:6379/0", help="redis:// or amqp://")
    parser.add_argument(
        "--detector", choices=DETECTORS, default=Settings().detector, help="the servers' and the reference's"
    )
    args = parser.parse_args(argv)

    root = args.directory.resolve()
    files = find_images(root, args.limit)
    if not files:
        parser.error(f"no images under {root}")
    modes = [mode.strip() for mode in args.modes.split(",") if mode.strip()]
    print(
        f"{len(files)} photos from {root}; detector {args.detector}; {os.cpu_count()} cores; broker {args.broker}; "
        f"load average at start {os.getloadavg()[0]:.1f}\n"
    )
    raw = [raw_dlib(files, args.detector)]
    rows = []
    with tempfile.TemporaryDirectory(prefix="immray-bench-") as work:
        for mode in modes:
            rows.append((mode, *run_mode(mode, files, root, args, Path(work))))
    raw.append(raw_dlib(files, args.detector))
    per_core = len(files) / (sum(raw) / len(raw))
    print(f"raw dlib, one core: {per_core:.2f} photos/s (runs of {raw[0]:.1f} s and {raw[1]:.1f} s)\n")
    print(
        f"{'mode':<10} {'cores':>5} {'photos':>6} {'failed':>6} {'faces':>6} {'seconds':>8} {'photos/s':>9} "
        f"{'faces/s':>8} {'ratio':>6}"
    )
    for mode, seconds, indexed, failed, faces in rows:
        cores = args.cores if mode == "embedded" else int(mode.rsplit("-", 1)[1])
        rate = (indexed + failed) / seconds
        print(
            f"{mode:<10} {cores:>5} {indexed + failed:>6} {failed:>6} {faces:>6} {seconds:>8.2f} {rate:>9.2f} "
            f"{faces / seconds:>8.2f} {rate / (per_core * cores):>6.2f}"
        )
    print(f"\nload average at end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
