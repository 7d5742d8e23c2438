"""A bulk backfill, as a Ray job: ``python -m immray.jobs.backfill LOCATION --dataset P/D [pool options]``
(``immray backfill`` submits it; ``ray job submit -- python -m immray.jobs.backfill ...`` works too).

1. List the folder or bucket prefix and keep the photos the dataset lacks or holds changed
   (``backfill_plan``): a backfill submitted again skips what is indexed and unchanged.
2. Record them Pending in requests of 100 (``services.indexing.record_pending``: the rows, EventIds and
   notifications of BatchIndexFileMeta).
3. Analyse and store them with Ray Data: ``from_items(files).map_batches(BackfillAnalysis, concurrency=
   <pool>, batch_size=...)``, an actor pool of the face models (on GPUs when the pool asks for them); each
   actor stores its photos as the API's indexing does (``services.indexing.analyze_files``).
4. Start one clustering task of the dataset, hand it to the dataset's actor, and wait for its end.

Progress goes to the job's log as ``backfill_progress`` lines. The job's settings are its environment's
IMMRAY_* variables (the cluster nodes', plus the submission's ``runtime_env``): the database and Milvus
must be the server's, reachable from every node.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Iterator, Sequence
from typing import Any

from immray import vectors
from immray.jobs.backfill_plan import BackfillRefused, Plan, ensure_dataset, plan_backfill
from immray.jobs.backfill_pool import PoolSpec, parse_actors
from immray.jobs.backfill_progress import Progress
from immray.jobs.registry import get_job
from immray.jobs.submission import install_backend, uninstall_backend
from immray.protocol.errors import ImmError
from immray.protocol.params import RESOURCE_NAME
from immray.services import clustering_task, indexing, task_leases
from immray.services.database import Database
from immray.services.input_files import InputFile
from immray.settings import Settings, get_settings
from immray.sources import sources_for
from immray.store import File, ObjectStatus, TaskStatus

log = logging.getLogger("immray.backfill")

REPORT_SECONDS = 2.0
SHOWN_FAILURES = 20


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m immray.jobs.backfill", description=__doc__.split("\n")[0]
    )
    parser.add_argument("location", help="a folder (path or file:// URI) or a bucket prefix (s3://, oss://)")
    parser.add_argument(
        "--dataset", required=True, metavar="P/D", help="project/dataset (created if missing)"
    )
    parser.add_argument("--actors", default="1", help="the pool: a size (2) or a range (1-4)")
    parser.add_argument("--batch-size", type=int, default=8, help="photos per model batch")
    parser.add_argument("--num-cpus", type=float, default=1.0, help="CPUs per actor")
    parser.add_argument("--num-gpus", type=float, default=0.0, help="GPUs per actor")
    parser.add_argument("--notify-topic", help="a topic of IMMRAY_NOTIFY_TOPICS told of each request's end")
    parser.add_argument("--no-cluster", action="store_true", help="do not start a clustering task at the end")
    parser.add_argument("--tag", default="", help="the clustering task's Backfill tag (the submission id)")
    args = parser.parse_args(argv)
    project, _, dataset = args.dataset.partition("/")
    if not RESOURCE_NAME.fullmatch(project) or not RESOURCE_NAME.fullmatch(dataset):
        parser.error(
            f"--dataset: PROJECT/DATASET, each 1-128 of A-Za-z0-9_- from a letter or _, not {args.dataset!r}"
        )
    args.project, args.dataset_name = project, dataset
    try:
        low, high = parse_actors(args.actors)
        args.pool = PoolSpec(low, high, args.batch_size, args.num_cpus, args.num_gpus)
    except ValueError as exc:
        parser.error(str(exc))
    return args


def location_uri(location: str) -> str:
    """A path becomes its ``file://`` URI (absolute, not resolved: as ``immray index`` writes them)."""
    import os
    from pathlib import Path

    if "://" in location:
        return location
    return Path(os.path.abspath(location)).as_uri() + "/"


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = get_settings()
    progress = Progress()
    try:
        run(settings, args, progress)
    except (BackfillRefused, ImmError) as exc:
        progress.phase, progress.message = (
            "failed",
            str(exc) if isinstance(exc, BackfillRefused) else exc.message,
        )
        report(progress)
        print(f"backfill refused: {progress.message}", file=sys.stderr)
        return 2
    return 0 if progress.phase == "done" else 1


def report(progress: Progress) -> None:
    print(progress.line(), flush=True)
    print(progress.summary(), flush=True)


def run(settings: Settings, args: argparse.Namespace, progress: Progress) -> None:
    db = Database.connect(settings.resolved_database_url, migrate=True)
    vectors.attach(db, settings)
    sources = sources_for(settings)
    notification = _notification(settings, args.notify_topic)
    ensure_dataset(db, args.project, args.dataset_name)
    plan = plan_backfill(db, sources, settings, location_uri(args.location), args.project, args.dataset_name)
    progress.listed, progress.skipped, progress.total = plan.listed, plan.skipped, len(plan.to_index)
    report(progress)
    files = record(db, sources, plan, args.project, args.dataset_name, notification, args.tag)
    progress.phase = "analysing"
    report(progress)
    if files:
        analyse(db, settings, files, args.pool, progress)
        progress.failures = failures(db, [file_id for file_id, _ in files])
    if not args.no_cluster:
        progress.phase = "clustering"
        report(progress)
        task = start_clustering(db, settings, args.project, args.dataset_name, args.tag, notification)
        progress.task_id = task
        status, message = wait_task(db, task, settings.task_poll_seconds)
        if status != TaskStatus.SUCCEEDED:
            progress.phase, progress.message = (
                "failed",
                f"the clustering task {task} ended {status}: {message}",
            )
            report(progress)
            return
    progress.phase = "done"
    report(progress)


def record(
    db: Database,
    sources: Any,
    plan: Plan,
    project: str,
    dataset: str,
    notification: dict[str, Any] | None,
    tag: str,
) -> list[tuple[int, str]]:
    """The files to analyse recorded Pending, one request (EventId) per 100, as BatchIndexFileMeta does."""
    files: list[tuple[int, str]] = []
    for batch in _chunks(plan.to_index, indexing.MAX_BATCH):
        accepted = indexing.record_pending(
            db,
            sources,
            indexing.IndexRequest(
                project_name=project,
                dataset_name=dataset,
                files=[InputFile(uri=uri) for uri in batch],
                action="BatchIndexFileMeta",
                notification=notification,
                request_id=tag or None,
            ),
        )
        files.extend((file_id, accepted.event_id) for file_id in accepted.file_ids)
    return files


def analyse(
    db: Database, settings: Settings, files: list[tuple[int, str]], pool: PoolSpec, progress: Progress
) -> None:
    """Ray Data over the actor pool; the outcomes stream back to count progress."""
    import ray

    if not ray.is_initialized():
        ray.init(logging_level="warning")  # inside a Ray job: the job's cluster
    from ray.data import DataContext

    from immray.jobs.backfill_analysis import BackfillAnalysis

    context = DataContext.get_current()
    context.enable_progress_bars = False  # the job's own progress lines say it
    context.log_internal_stack_trace_to_stdout = False
    mode = indexing.detection_mode(db, files[0][0])  # the dataset's FaceDetectionMode, for the whole run
    items = [{"file_id": file_id, "event_id": event_id} for file_id, event_id in files]
    dataset = ray.data.from_items(
        items, override_num_blocks=max(1, -(-len(items) // pool.batch_size))
    ).map_batches(
        BackfillAnalysis,
        fn_constructor_kwargs={"settings": settings.to_overrides(), "mode": mode},
        compute=pool.compute(),
        batch_size=pool.batch_size,
        num_cpus=pool.num_cpus,
        num_gpus=pool.num_gpus,
        batch_format="numpy",
    )
    began, began_at = time.monotonic(), time.time()
    reported = began
    first_end: float | None = None  # the pool's first batch's end: from there on, the pool is up
    for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
        for status, faces in zip(batch["status"], batch["faces"], strict=True):
            progress.done += 1
            progress.indexed += status == ObjectStatus.INDEXED
            progress.failed += status == ObjectStatus.FAILED
            progress.faces += int(faces)
        progress.seconds = time.monotonic() - began
        if first_end is None:
            first_end = float(batch["ended"].min())
            progress.first_seconds = first_end - began_at
        else:  # batches begun before it are left out, though part of their work falls after it
            progress.steady_done += int((batch["began"] >= first_end).sum())
            progress.steady_seconds = max(progress.steady_seconds, float(batch["ended"].max()) - first_end)
        if time.monotonic() - reported >= REPORT_SECONDS:
            reported = time.monotonic()
            report(progress)
    progress.seconds = time.monotonic() - began


def failures(db: Database, file_ids: list[int]) -> list[str]:
    """``URI: Reason`` of the first failed files of this run."""
    from sqlalchemy import select

    found: list[str] = []
    with db.read() as session:
        for chunk in _chunks(file_ids, 500):
            rows = session.execute(
                select(File.uri, File.reason)
                .where(File.id.in_(chunk), File.object_status == ObjectStatus.FAILED)
                .order_by(File.id)
                .limit(SHOWN_FAILURES - len(found))
            ).all()
            found.extend(f"{uri}: {reason}" for uri, reason in rows)
            if len(found) >= SHOWN_FAILURES:
                break
    return found


class _TasksToActors:
    """The job backend of this driver: a task goes to its dataset's actor, as the ingress sends it."""

    def __init__(self, db: Database, settings: Settings) -> None:
        self._db = db
        self._settings = settings

    def submit(self, job_name: str, payload: dict[str, Any]) -> None:
        from immray.actors.dataset import actor_name, dataset_actor

        spec = get_job(job_name)
        if spec is None or not spec.task:
            raise RuntimeError(f"a backfill runs no {job_name} job")
        serial_key, project, dataset = task_leases.route_of(self._db, str(payload["task_id"]))
        key = serial_key or "tasks"
        actor = dataset_actor(self._settings, name=actor_name(project, dataset, key), serial_key=key)
        actor.submit.remote(str(payload["task_id"]), job_name)


def start_clustering(
    db: Database,
    settings: Settings,
    project: str,
    dataset: str,
    tag: str,
    notification: dict[str, Any] | None,
) -> str:
    """One clustering task of the dataset (tagged ``Backfill``), handed to the dataset's actor."""
    import ray

    if not ray.is_initialized():
        ray.init(logging_level="warning")
    from immray.jobs.catalog import load_jobs

    load_jobs()
    backend = _TasksToActors(db, settings)
    install_backend(backend)
    try:
        record = clustering_task.create_clustering_task(
            db, project, dataset, tags={"Backfill": tag or "true"}, notification=notification
        )
    finally:
        uninstall_backend(backend)
    return record.task_id


def wait_task(db: Database, task_id: str, poll_seconds: float) -> tuple[str, str | None]:
    from immray.services.tasks import load_task

    while True:
        with db.read() as session:
            task = load_task(session, task_id)
        if task is None:
            return "Failed", "the task is gone"
        if task.status != TaskStatus.RUNNING:
            return task.status, task.message
        time.sleep(min(poll_seconds, 1.0))


def _notification(settings: Settings, topic: str | None) -> dict[str, Any] | None:
    if not topic:
        return None
    from immray.notify import validate_notification

    try:
        return validate_notification({"MNS": {"TopicName": topic}}, settings.notify_topics)
    except ImmError as exc:
        raise BackfillRefused(exc.message) from None


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


if __name__ == "__main__":
    sys.exit(main())
