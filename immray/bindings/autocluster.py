"""Automatic clustering: a dataset with ``AutoClustering=true`` gets a FaceClustering task by itself once
its indexing has settled -- no file Pending, no file change for ``AutoClusteringQuietSeconds`` -- and
something is left to cluster (its change number passed the one its last clustering task reached).

One task at a time: the check and the task's creation share one transaction that locks the dataset row
and finds no clustering task of the dataset Running, so a burst of changes makes one task, not one per
file, and two runners of a scale-out deployment cannot both start one. The task is an ordinary
FaceClustering task (GetTask, ListTasks, its notification to ``AutoClusteringTopic`` when one is set).
"""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy import func, select

from immray.notify.requests import validate_notification
from immray.protocol.errors import ImmError
from immray.services import clustering_task, workflow_parameters
from immray.services.database import Database
from immray.services.tasks import NewTask, TaskRecord, create_task, dataset_serial_key, submit_task
from immray.settings import Settings
from immray.store import ClusteringState, Dataset, Figure, File, ObjectStatus, Task, TaskStatus, utcnow

log = logging.getLogger("immray.bindings")

AUTO_CLUSTERING = workflow_parameters.AUTO_CLUSTERING
QUIET_SECONDS = workflow_parameters.AUTO_CLUSTERING_QUIET_SECONDS
TOPIC = workflow_parameters.AUTO_CLUSTERING_TOPIC
TAGS = {"AutoClustering": "true"}


def _due(session, dataset: Dataset) -> bool:
    """Settled and with something new to cluster (read in the caller's transaction)."""
    params = dataset.workflow_parameters
    if not workflow_parameters.setting(params, AUTO_CLUSTERING.name):
        return False
    clustered = session.scalar(
        select(ClusteringState.clustered_seq).where(ClusteringState.dataset_id == dataset.id)
    )
    if dataset.change_seq <= (clustered or 0):
        return False
    pending = session.scalar(
        select(File.id)
        .where(File.dataset_id == dataset.id, File.object_status == ObjectStatus.PENDING)
        .limit(1)
    )
    if pending is not None:
        return False
    quiet = timedelta(seconds=workflow_parameters.setting(params, QUIET_SECONDS.name))
    last_file = session.scalar(select(func.max(File.updated_at)).where(File.dataset_id == dataset.id))
    last_removal = session.scalar(select(func.max(Figure.deleted_at)).where(Figure.dataset_id == dataset.id))
    last = max((t for t in (last_file, last_removal) if t is not None), default=None)
    if last is not None and utcnow() - last < quiet:
        return False
    # A clustering task that failed after the last change is not retried until something changes again.
    latest = session.execute(
        select(Task.status, Task.end_time)
        .where(Task.dataset_id == dataset.id, Task.task_type == clustering_task.TASK_TYPE)
        .order_by(Task.id.desc())
        .limit(1)
    ).first()
    return not (
        latest is not None
        and latest.status == TaskStatus.FAILED
        and latest.end_time is not None
        and (last is None or latest.end_time >= last)
    )


def _running(session, dataset_id: int) -> bool:
    return (
        session.scalar(
            select(Task.id)
            .where(Task.serial_key == dataset_serial_key(dataset_id), Task.status == TaskStatus.RUNNING)
            .limit(1)
        )
        is not None
    )


def maybe_cluster(db: Database, settings: Settings, dataset_id: int) -> TaskRecord | None:
    """Start the dataset's automatic clustering task if it is due; the task, or None."""
    with db.read() as session:
        dataset = session.get(Dataset, dataset_id)
        if dataset is None or not _due(session, dataset) or _running(session, dataset_id):
            return None
    with db.write() as session:
        dataset = session.scalar(select(Dataset).where(Dataset.id == dataset_id).with_for_update())
        if dataset is None or not _due(session, dataset) or _running(session, dataset_id):
            return None
        record = create_task(
            session,
            NewTask(
                project_name=dataset.project.name,
                dataset_name=dataset.name,
                task_type=clustering_task.TASK_TYPE,
                job_name=clustering_task.JOB_NAME,
                job_payload={"dataset_id": dataset_id},
                tags=TAGS,
                notification=_notification(settings, dataset),
                serial_key=dataset_serial_key(dataset_id),
            ),
        )
    submit_task(record)
    log.info("dataset %s: automatic clustering task %s", dataset_id, record.task_id)
    return record


def _notification(settings: Settings, dataset: Dataset) -> dict | None:
    topic = workflow_parameters.setting(dataset.workflow_parameters, TOPIC.name)
    if not topic:
        return None
    try:
        return validate_notification({"MNS": {"TopicName": topic}}, settings.notify_topics)
    except ImmError as exc:
        log.warning("dataset %s: AutoClusteringTopic %r: %s", dataset.id, topic, exc.message)
        return None
