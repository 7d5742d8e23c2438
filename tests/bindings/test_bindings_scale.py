"""Two servers on one PostgreSQL database (the scale-out shape): exactly one binding runner holds a
binding; when its server stops, the other takes the binding over and goes on syncing the folder."""

from __future__ import annotations

import contextlib

import pytest
from alibabacloud_imm20200930 import models as imm
from binding_kit import jpeg, wait_files, wait_for, wait_incremental
from live_immray import Key, LiveImmray
from live_indexing import new_dataset
from live_server import serve
from sqlalchemy import select

from immray.api.bootstrap import build_app
from immray.bindings.runner import BindingRunner
from immray.policy import ADMIN_POLICY
from immray.services import access_keys
from immray.services.database import Database
from immray.settings import Settings
from immray.store import Binding


def runner_of(app) -> BindingRunner:
    (runner,) = [service for service in app.state.services if isinstance(service, BindingRunner)]
    return runner


@pytest.mark.postgres
def test_one_server_holds_a_binding_and_the_other_takes_it_over(tmp_path, new_postgres_database):
    root = tmp_path / "photos"
    root.mkdir()
    (root / "first.jpg").write_bytes(jpeg("astronaut", scale=0.9))
    url = new_postgres_database()
    settings = Settings(
        data_dir=tmp_path,
        database_url=url,
        allowed_roots=[root],
        worker_threads=1,
        binding_scan_seconds=1.0,
        task_lease_seconds=3.0,
    )
    databases = [Database.connect(url, migrate=True), Database.connect(url)]
    admin = access_keys.create_key(databases[0], ADMIN_POLICY, is_admin=True)
    key = Key(admin.info.access_key_id, admin.secret)
    apps = [build_app(settings, db=db) for db in databases]
    runners = [runner_of(app) for app in apps]
    stacks = [contextlib.ExitStack(), contextlib.ExitStack()]
    try:
        addresses = [stack.enter_context(serve(app)) for stack, app in zip(stacks, apps, strict=True)]
        client = LiveImmray(addresses[0], settings, databases[0], key).client()
        project, dataset = new_dataset(client)
        uri = client.create_binding(
            imm.CreateBindingRequest(project_name=project, dataset_name=dataset, uri=root.as_uri())
        ).body.binding.uri
        wait_incremental(client, project, dataset, uri)
        wait_files(client, project, dataset, [(root / "first.jpg").as_uri()])
        with databases[0].read() as session:
            binding_id, owner = session.execute(select(Binding.id, Binding.lease_owner)).one()
        (holder,) = [i for i, runner in enumerate(runners) if runner.owner == owner]
        other = 1 - holder
        assert runners[holder].held == {binding_id} and runners[other].held == set()

        stacks[holder].close()  # the holder's server stops and lets go of the binding
        wait_for("the other runner to take over", lambda: runners[other].held == {binding_id})
        (root / "second.jpg").write_bytes(jpeg("astronaut", mirror=True, scale=0.9))
        client = LiveImmray(addresses[other], settings, databases[other], key).client()
        found = wait_files(
            client, project, dataset, [(root / n).as_uri() for n in ("first.jpg", "second.jpg")]
        )
        assert {file.object_status for file in found.values()} == {"Indexed"}
        with databases[0].read() as session:
            assert session.scalar(select(Binding.lease_owner)) == runners[other].owner
    finally:
        for stack in stacks:
            stack.close()
        for db in databases:
            db.close()
