"""The Celery application of the scale-out mode: one Celery task, ``immray.run``, carries every job.

A job travels as ``(job name, JSON payload)``, exactly what :func:`immray.jobs.submit` takes, so the job
registry stays the one list of jobs and a Celery worker runs them through the same ``JobRunner`` as the
embedded pool. The server only sends (:mod:`immray.jobs.celery_backend`); ``immray worker`` runs
them (:mod:`immray.jobs.celery_worker`).

Delivery is at least once, never at most once:

- late acknowledgement: a message is acknowledged when its job has returned, so a worker that dies in the
  middle leaves it to be delivered again: at once on RabbitMQ (the dead worker's connection closes), after
  ``Settings.broker_visibility_timeout`` on Redis (which has no connections to watch);
- ``reject_on_worker_lost``: when one process of a worker dies (OOM killer, SIGKILL), its message goes back
  to the queue instead of being acknowledged as failed;
- prefetch of one: a worker holds no more messages than it has processes, so nothing waits behind a busy
  process while another worker is idle.

Every job is therefore idempotent: a task job runs only under its task's lease (another delivery of it
finds the lease taken and is skipped), a photo's analysis only while the file is Pending under its request.

Two queues: task jobs (clustering, merging: few and long) and the others (one per photo: many and short),
so a clustering request is not stuck behind a 10,000-photo indexing backlog. Workers read both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from celery import Celery
from kombu import Queue

from immray.jobs.registry import get_job
from immray.settings import Settings

TASK_NAME = "immray.run"
SEND_RETRY = {"max_retries": 3, "interval_start": 0, "interval_step": 0.5, "interval_max": 1}


@dataclass(frozen=True)
class Queues:
    """The two queues of a deployment, named after ``Settings.broker_namespace`` so that several
    deployments (or test runs) can share one broker without taking each other's jobs."""

    tasks: str
    jobs: str

    @classmethod
    def of(cls, settings: Settings) -> Queues:
        return cls(f"{settings.broker_namespace}.tasks", f"{settings.broker_namespace}.jobs")

    @property
    def names(self) -> tuple[str, str]:
        return (self.tasks, self.jobs)

    def queue_for(self, job_name: str) -> str:
        spec = get_job(job_name)
        return self.tasks if spec is not None and spec.task else self.jobs


def send(app: Celery, queues: Queues, job_name: str, payload: dict[str, Any]) -> None:
    """Put one job on its queue (retrying briefly if the broker connection just dropped)."""
    app.send_task(
        TASK_NAME,
        args=[job_name, payload],
        queue=queues.queue_for(job_name),
        retry=True,
        retry_policy=SEND_RETRY,
    )


def broker_kind(url: str) -> str:
    """``redis`` or ``amqp`` (the scheme family of a broker URL)."""
    scheme = url.split(":", 1)[0].lower()
    return "redis" if scheme.startswith("redis") else "amqp"


def display_url(url: str) -> str:
    """The broker URL without its user and password, for logs and messages."""
    scheme, sep, rest = url.partition("://")
    return f"{scheme}{sep}{rest.rpartition('@')[2]}" if sep else url


def make_celery(settings: Settings) -> Celery:
    """The Celery app for ``settings.broker_url`` (the same in the server and in every worker)."""
    if not settings.broker_url:
        raise ValueError("the scale-out mode needs a broker URL (IMMRAY_BROKER_URL)")
    app = Celery("immray", broker=settings.broker_url, set_as_current=False)
    queues = Queues.of(settings)
    conf: dict[str, Any] = {
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_ignore_result": True,
        "result_backend": None,
        "task_serializer": "json",
        "accept_content": ["json"],
        "task_queues": [Queue(name) for name in queues.names],
        "task_default_queue": queues.jobs,
        "control_exchange": settings.broker_namespace,  # `immray status` asks only its own workers
        "broker_connection_retry_on_startup": True,
        # Loading the face models takes a few seconds: a new worker process may take that long to start.
        "worker_proc_alive_timeout": 120.0,
        "worker_hijack_root_logger": False,
        "worker_redirect_stdouts": False,
    }
    if broker_kind(settings.broker_url) == "redis":
        timeout = settings.broker_visibility_timeout
        conf["broker_transport_options"] = {
            "visibility_timeout": timeout,
            # How often a worker looks for messages whose worker died (older than the timeout).
            "unacked_restore_interval": max(1.0, min(30.0, timeout / 4)),
            "unacked_restore_throttle": 1,
            "global_keyprefix": f"{settings.broker_namespace}:",
        }
    app.conf.update(conf)
    return app
