"""The services keep Milvus equal to the store: faces written after their commit, deleted with their
files and datasets, repaired by the next task after a crash between the two writes; `vectors check` and
`rebuild`; the same clusters on milvus-lite and on a Milvus server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from dataset_kit import DatasetKit
from faces_kit import people_faces

from immray.services import datasets, files
from immray.services.clustering_task import StateCache
from immray.services.database import Database
from immray.vectors import attach, open_store, sync

HERE = Path(__file__).parent


@pytest.fixture
def db(milvus_settings) -> Database:
    milvus_settings.data_dir.mkdir(parents=True, exist_ok=True)
    database = Database.connect(milvus_settings.resolved_database_url, migrate=True)
    attach(database, milvus_settings)
    yield database
    database.close()


def _photos(kit: DatasetKit, raw: np.ndarray, per_photo: int = 3) -> list[int]:
    return [kit.add_photo(raw[lo : lo + per_photo]) for lo in range(0, len(raw), per_photo)]


def test_faces_reach_milvus_with_their_commit_and_leave_with_their_files_and_dataset(db, milvus_settings):
    store = open_store(milvus_settings)
    kit = DatasetKit(db, milvus_settings)
    other = DatasetKit(db, milvus_settings, name="other")
    raw, _ = people_faces(6, 5, seed=5)
    file_ids = _photos(kit, raw)
    _photos(other, raw[:6])
    assert store.count(kit.dataset_id) == len(kit.live_faces()) == 30
    kit.cluster()
    assert store.count(kit.dataset_id) == 30  # the task wrote nothing twice

    with db.read() as session:
        from immray.store import File

        uris = [session.get(File, f).uri for f in file_ids[:2]]
    files.delete_files(db, kit.project, kit.name, uris, must_exist=True)
    assert len(kit.live_faces()) == 24
    kit.cluster()  # the task that takes the tombstones out of their clusters deletes their vectors
    assert store.count(kit.dataset_id) == 24

    datasets.delete_dataset(db, kit.project, kit.name)
    assert store.count(kit.dataset_id) == 0
    assert store.count(other.dataset_id) == 6  # another dataset's vectors stay
    assert all(d.clean for d in sync.check(db, store))


def test_same_clusters_on_milvus_as_in_memory_and_after_a_restart(db, milvus_settings):
    raw, who = people_faces(8, 6, seed=6)
    kit = DatasetKit(db, milvus_settings)
    cache = StateCache()  # the dataset actor's memory between tasks
    _photos(kit, raw[:24])
    kit.cluster(cache)
    _photos(kit, raw[24:36])
    kit.cluster(cache)
    _photos(kit, raw[36:])
    on_milvus = kit.cluster(None)  # a restarted actor: the state's index is restored from Milvus
    assert len({c for c in on_milvus.values() if c}) >= 6

    # The same photos, clustered with the vectors in memory (no store attached to this database).
    memory_db = Database.connect(f"sqlite:///{milvus_settings.data_dir / 'memory.db'}", migrate=True)
    from dataset_kit import Run

    class Bare(Run):
        settings = None

    mem = DatasetKit(memory_db, milvus_settings)
    from immray.services.clustering_task import run_clustering

    for part in (raw[:24], raw[24:36], raw[36:]):
        _photos(mem, part)
        run_clustering(memory_db, Bare(None, None), mem.dataset_id)
    in_memory = mem.assignments()
    memory_db.close()
    # Face ids are the same (both stores numbered them alike); cluster ids are salted per dataset.
    assert _groups(on_milvus) == _groups(in_memory)


def _groups(assignments: dict[int, str | None]) -> set[frozenset[int]]:
    by: dict[str, set[int]] = {}
    for face, cluster in assignments.items():
        if cluster:
            by.setdefault(cluster, set()).add(face)
    return {frozenset(v) for v in by.values()}


def test_check_reports_a_removed_vector_and_rebuild_restores_it(db, milvus_settings):
    store = open_store(milvus_settings)
    kit = DatasetKit(db, milvus_settings)
    raw, _ = people_faces(4, 4, seed=7)
    _photos(kit, raw)
    victim = kit.live_faces()[3]
    store.delete_keys([victim])
    (report,) = [d for d in sync.check(db, store) if d.dataset_id == kit.dataset_id]
    assert report.missing == [victim] and not report.orphans and not report.stale
    assert sync.rebuild(db, store, kit.dataset_id) == (15, 16)
    assert all(d.clean for d in sync.check(db, store))


_KILLED_WRITER = textwrap.dedent(
    """
    import os, signal, sys
    sys.path.insert(0, {here!r})
    import numpy as np
    from immray.settings import Settings
    from immray.services import indexing
    from immray.services.database import Database
    from immray.vectors import attach
    from dataset_kit import DatasetKit
    from faces_kit import people_faces

    settings = Settings.model_validate_json({settings!r})
    db = Database.connect(settings.resolved_database_url)
    attach(db, settings)
    def die(*args, **kwargs):  # the power goes after the SQL commit, before the Milvus write
        os.kill(os.getpid(), signal.SIGKILL)
    indexing.write_faces = die
    kit = DatasetKit.__new__(DatasetKit)
    kit.db, kit.settings, kit.dataset_id = db, settings, {dataset_id}
    raw, _ = people_faces(3, 4, seed=8)
    kit.add_photo(raw[:4])
    """
)


def test_a_writer_killed_between_the_sql_commit_and_milvus_is_repaired_by_the_next_task(db, milvus_settings):
    store = open_store(milvus_settings)
    kit = DatasetKit(db, milvus_settings)
    raw, _ = people_faces(3, 4, seed=8)
    _photos(kit, raw[4:], per_photo=4)
    kit.cluster()
    assert store.count(kit.dataset_id) == 8
    if not milvus_settings.milvus_uri:  # milvus-lite: the other process must not open this one's file
        from immray.vectors import endpoint, registry

        registry.forget(milvus_settings)
        endpoint.release(milvus_settings)
    script = _KILLED_WRITER.format(
        here=str(HERE), settings=milvus_settings.model_dump_json(), dataset_id=kit.dataset_id
    )
    done = subprocess.run([sys.executable, "-c", script], env=os.environ.copy(), timeout=120)
    assert done.returncode == -signal.SIGKILL
    store = open_store(milvus_settings)
    assert len(kit.live_faces()) == 12 and store.count(kit.dataset_id) == 8  # 4 faces in SQL only
    clusters = kit.cluster()
    assert store.count(kit.dataset_id) == 12  # repaired: none missing, none twice
    assert sorted(store.keys(kit.dataset_id)[store.collection("test-model", 128)]) == sorted(kit.live_faces())
    assert set(clusters) == set(kit.live_faces()) and any(clusters.values())
