"""Two datasets' actors cluster at once on one Milvus (real Ray, real actors): milvus-lite served to every
process by one `milvus-lite server` (as `immray serve` starts it), or the Milvus server."""

from __future__ import annotations

import contextlib
import time

from dataset_kit import DatasetKit
from faces_kit import people_faces
from sqlalchemy import select

from immray.actors.dataset import actor_name, dataset_actor
from immray.services.clustering_task import create_clustering_task
from immray.services.database import Database
from immray.services.tasks import dataset_serial_key
from immray.store import Task
from immray.vectors import attach, open_store
from immray.vectors.endpoint import LiteServer
from ray_testkit import fresh_namespace, kill_dataset_actors, start_ray


def _wait_done(db: Database, task_ids: list[str], timeout: float = 240.0) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while True:
        with db.read() as session:
            states = dict(
                session.execute(select(Task.task_id, Task.status).where(Task.task_id.in_(task_ids))).all()
            )
        if all(s != "Running" for s in states.values()) or time.monotonic() > deadline:
            return states
        time.sleep(0.5)


def test_two_datasets_actors_cluster_at_once_on_one_milvus(milvus_settings):
    milvus_settings.data_dir.mkdir(parents=True, exist_ok=True)
    settings = milvus_settings.model_copy(
        update={
            "ray_namespace": fresh_namespace(),
            "database_url": f"sqlite:///{milvus_settings.data_dir / 'immray.db'}",
        }
    )
    lite = None
    if not settings.milvus_uri:
        lite = LiteServer(settings)
        settings = settings.model_copy(update={"milvus_uri": lite.start()})
    db = Database.connect(settings.resolved_database_url, migrate=True)
    attach(db, settings)
    try:
        kits = [DatasetKit(db, settings, name=name) for name in ("first", "second")]
        for seed, kit in enumerate(kits):
            raw, _ = people_faces(5, 6, seed=20 + seed)
            for lo in range(0, len(raw), 3):
                kit.add_photo(raw[lo : lo + 3])
        tasks = [create_clustering_task(db, kit.project, kit.name).task_id for kit in kits]
        start_ray()
        for kit in kits:  # each actor, on starting, runs its dataset's waiting tasks
            key = dataset_serial_key(kit.dataset_id)
            dataset_actor(settings, name=actor_name(kit.project, kit.name, key), serial_key=key)
        states = _wait_done(db, tasks)
        assert set(states.values()) == {"Succeeded"}, states
        store = open_store(settings)
        for kit in kits:
            clusters = kit.assignments()
            assert len({c for c in clusters.values() if c}) >= 4
            assert store.count(kit.dataset_id) == len(kit.live_faces()) == 30
    finally:
        with contextlib.suppress(Exception):
            kill_dataset_actors(settings.ray_namespace)
        db.close()
        if lite is not None:
            lite.stop()
