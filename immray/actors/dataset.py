"""The dataset actor: one per dataset, named after it (``dataset:photos/family``) in the server's Ray
namespace, that runs the dataset's clustering and merging tasks one after the other.

Why an actor: Ray runs exactly one live actor of a name, so the tasks of a dataset have one runner on the
whole cluster, which keeps the dataset's clustering state in memory between tasks (``StateCache``) and is
restarted by Ray when its process or node dies (``max_restarts``). The task table's leases stay as a
guard (they also keep two Ray clusters that share one database from running one dataset twice): the actor
claims each task before running it, and a restarted actor first frees the leases its earlier lives held,
then runs again every task of its dataset still Running, from the store, so a task cut short ends
Succeeded with the clusters an undisturbed run gives (clustering is deterministic).
"""

from __future__ import annotations

import functools
import logging
import threading
import time
import uuid
from typing import Any

import ray

from immray.jobs.registry import job_names
from immray.jobs.task_worker import TaskWorker
from immray.services import task_leases
from immray.services.clustering_task import StateCache
from immray.services.database import Database
from immray.settings import Settings

log = logging.getLogger("immray.actors")

ACTOR_PREFIX = "dataset:"


def actor_name(project: str | None, dataset: str | None, serial_key: str) -> str:
    """The actor's name as the Ray dashboard shows it: the dataset's project/name, and its serial key
    (a dataset deleted and created again under the same name is another dataset)."""
    if project and dataset:
        return f"{ACTOR_PREFIX}{project}/{dataset}#{serial_key.rpartition(':')[2]}"
    return f"{ACTOR_PREFIX}{serial_key}"


class DatasetActor:
    """The actor's body (``ray.remote`` is applied by :func:`dataset_actor`)."""

    def __init__(self, settings: dict[str, Any], name: str, serial_key: str) -> None:
        from immray.observability.logs import configure_logging

        self._settings = Settings.from_overrides(settings)
        configure_logging(self._settings.log_format)
        self._serial_key = serial_key
        self._name = name
        self._db = Database.connect(self._settings.resolved_database_url)
        context = ray.get_runtime_context()
        # Lease owners: the cluster, the server's namespace and the actor's name, then one id per life of
        # the actor (the runtime context's namespace is the caller's job's, not the actor's).
        self._owner_prefix = f"ray:{context.gcs_address}/{self._settings.ray_namespace}/{name}#"
        self._worker = TaskWorker(
            self._db,
            self._settings,
            owner=self._owner_prefix + uuid.uuid4().hex[:12],
            submit=self._submit_next,
            state_cache=StateCache(),
        )
        self._worker.start()
        freed = task_leases.release_predecessors(
            self._db, owner_prefix=self._owner_prefix, owner=self._worker.owner
        )
        if freed:
            log.warning("%s restarted: running again the task(s) its last life left: %s", name, freed)
        self.resume()
        threading.Thread(target=self._exit_when_idle, name="immray-idle", daemon=True).start()

    def submit(self, task_id: str, job_name: str) -> bool:
        """Queue a task of this dataset (once; it runs after the ones queued before it)."""
        return self._worker.submit(job_name, {"task_id": task_id})

    def resume(self) -> list[str]:
        """Queue every task of this dataset that may run now (after a restart, or a sweep)."""
        queued = []
        for task_id, job_name in task_leases.claimable(
            self._db,
            job_names=job_names(task=True),
            max_attempts=self._settings.task_max_attempts,
            serial_key=self._serial_key,
        ):
            if self._worker.submit(job_name, {"task_id": task_id}):
                queued.append(task_id)
        return queued

    def status(self) -> dict[str, Any]:
        """What ``immray status`` shows: the task running now and those waiting."""
        return {"serial_key": self._serial_key, **self._worker.status()}

    def _exit_when_idle(self) -> None:
        """A dataset with no task for ``dataset_actor_idle_seconds`` gives its process back; the next task
        makes the actor again (a task sent in the moment it exits waits in the table for the sweeper)."""
        idle_for = self._settings.dataset_actor_idle_seconds
        idle_since = time.monotonic()
        while True:
            time.sleep(min(idle_for, 5.0) / 2)
            status = self._worker.status()
            if status["running"] or status["queued"]:
                idle_since = time.monotonic()
            elif time.monotonic() - idle_since >= idle_for:
                log.info("%s idle for %.0f s: exiting", self._name, idle_for)
                self._worker.stop(timeout=5.0)
                ray.kill(ray.get_runtime_context().current_actor, no_restart=True)
                return

    def _submit_next(self, job_name: str, payload: dict[str, Any]) -> None:
        self._worker.submit(job_name, payload)

    def __ray_shutdown__(self) -> None:
        self._worker.stop(timeout=5.0)
        self._db.close()


@functools.cache
def _actor_class() -> Any:
    """``ray.remote(DatasetActor)``, made once per process (every task looks its actor up)."""
    return ray.remote(DatasetActor)


def dataset_actor(settings: Settings, *, name: str, serial_key: str, options: dict[str, Any] | None = None):
    """The handle of the dataset's actor, created on first use (``get_if_exists``: every caller on the
    cluster gets the same one)."""
    remote = _actor_class().options(
        name=name,
        namespace=settings.ray_namespace,
        get_if_exists=True,
        lifetime="detached",
        max_restarts=-1,
        max_concurrency=8,  # its methods answer while a task runs; the tasks themselves run one at a time
        **{"num_cpus": 0, **(options or {})},
    )
    return remote.remote(settings.to_overrides(), name, serial_key)
