"""Bindings survive a restart and resume where they were, and exactly one runner holds a binding at a time
(SQLite and PostgreSQL)."""

from __future__ import annotations

import time
from datetime import datetime

import pytest
from alibabacloud_imm20200930 import models as imm
from binding_kit import files_of, get_binding, jpeg, wait_files, wait_for, wait_incremental
from live_immray import BACKENDS, Key, LiveImmray, database_url_for
from live_indexing import new_dataset
from live_server import serve
from sqlalchemy import select

from immray.api.bootstrap import build_app
from immray.bindings import leases
from immray.bindings.runner import BindingRunner
from immray.policy import ADMIN_POLICY
from immray.services import access_keys
from immray.services.database import Database
from immray.settings import Settings
from immray.store import Binding, Dataset, Figure, File, Project
from ray_testkit import serve_app


def files_state(db: Database, uris: list[str]) -> dict[str, tuple[str, tuple[str, ...]]]:
    """URI -> (the EventId of the request that last submitted it, its FigureIds)."""
    with db.read() as session:
        rows = session.execute(select(File.id, File.uri, File.event_id).where(File.uri.in_(uris))).all()
        return {
            uri: (
                event_id,
                tuple(sorted(session.scalars(select(Figure.figure_id).where(Figure.file_id == file_id)))),
            )
            for file_id, uri, event_id in rows
        }


def scanned_at(db: Database, uri: str) -> datetime | None:
    with db.read() as session:
        cursor = session.scalar(select(Binding.cursor).where(Binding.uri == uri)) or {}
    return datetime.fromisoformat(cursor["scanned_at"]) if "scanned_at" in cursor else None


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_binding_resumes_after_a_restart_without_reindexing(request, tmp_path, backend):
    root = tmp_path / "photos"
    root.mkdir()
    (root / "astronaut.jpg").write_bytes(jpeg("astronaut", scale=0.9))
    (root / "portrait.jpg").write_bytes(jpeg("portrait", scale=2.0))
    uris = [(root / name).as_uri() for name in ("astronaut.jpg", "portrait.jpg")]
    url = database_url_for(request, backend, tmp_path)
    settings = Settings(data_dir=tmp_path, database_url=url, allowed_roots=[root], binding_scan_seconds=0.5)
    db = Database.connect(url, migrate=True)
    admin = access_keys.create_key(db, ADMIN_POLICY, is_admin=True)
    key = Key(admin.info.access_key_id, admin.secret)
    try:
        # A server cut short mid-scan: its runner listed and submitted the photos, nothing analysed them
        # (the app alone with its binding runner, off Ray).
        only_runner = build_app(
            settings, db=db, services=lambda context: [BindingRunner(context.db, settings)]
        )
        with serve(only_runner) as address:
            client = LiveImmray(address, settings, db, key).client()
            project, dataset = new_dataset(client)
            binding_uri = client.create_binding(
                imm.CreateBindingRequest(project_name=project, dataset_name=dataset, uri=root.as_uri())
            ).body.binding.uri
            wait_for("the photos to be submitted", lambda: len(files_of(client, project, dataset, uris)) == 2)
            assert get_binding(client, project, dataset, binding_uri).phase == "FullScanning"
        submitted = files_state(db, uris)
        with db.read() as session:  # the runner let go of its binding when the server stopped
            assert session.scalar(select(Binding.lease_owner).where(Binding.uri == binding_uri)) is None

        with serve_app(settings) as address:  # the Serve application resumes: analyses, submits nothing again
            client = LiveImmray(address, settings, db, key).client()
            wait_incremental(client, project, dataset, binding_uri)
            indexed = wait_files(client, project, dataset, uris)
        assert {file.object_status for file in indexed.values()} == {"Indexed"}
        after = files_state(db, uris)
        assert {uri: event for uri, (event, _) in after.items()} == {
            uri: event for uri, (event, _) in submitted.items()
        }
        assert all(faces for _, faces in after.values())

        restarted = time.time()
        with serve_app(settings) as address:  # redeployed on an unchanged tree: one listing, no analysis
            wait_for(
                "a pass after the restart",
                lambda: (scanned_at(db, binding_uri) or datetime.min).timestamp() > restarted,
            )
            binding = get_binding(
                LiveImmray(address, settings, db, key).client(), project, dataset, binding_uri
            )
        assert (binding.state, binding.phase) == ("Running", "IncrementalScanning")
        assert files_state(db, uris) == after
    finally:
        db.close()


@pytest.mark.parametrize("backend", BACKENDS)
def test_one_runner_holds_a_binding_at_a_time(request, tmp_path, backend):
    db = Database.connect(database_url_for(request, backend, tmp_path), migrate=True)
    try:
        with db.write() as session:
            dataset = Dataset(project=Project(name="p"), name="d")
            session.add(dataset)
            session.flush()
            session.add_all([Binding(dataset_id=dataset.id, uri=f"file:///b{i}/") for i in range(3)])
        first = leases.claim_free(db, owner="a", lease_seconds=60)
        assert len(first) == 3
        assert leases.claim_free(db, owner="b", lease_seconds=60) == []  # held: nobody else takes them
        assert leases.renew(db, first, owner="b", lease_seconds=60) == set()
        leases.release(db, first[:1], owner="a")
        assert leases.claim_free(db, owner="b", lease_seconds=0.5) == first[:1]
        assert leases.renew(db, first, owner="a", lease_seconds=60) == set(first[1:])
        time.sleep(0.6)  # b died: its lease runs out and another runner takes the binding over
        assert leases.claim_free(db, owner="c", lease_seconds=60) == first[:1]
        assert leases.renew(db, first[:1], owner="b", lease_seconds=60) == set()
    finally:
        db.close()
