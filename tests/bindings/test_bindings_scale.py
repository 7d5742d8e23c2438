"""Two servers on one PostgreSQL database (the scale-out shape): exactly one binding runner holds a
binding; when its server stops, the other takes the binding over and goes on syncing the folder."""

from __future__ import annotations

import pytest
from alibabacloud_imm20200930 import models as imm
from binding_kit import jpeg, wait_files, wait_for, wait_incremental
from live_immray import Key, LiveImmray
from live_indexing import new_dataset
from sqlalchemy import select

from immray.policy import ADMIN_POLICY
from immray.services import access_keys
from immray.services.database import Database
from immray.settings import Settings
from immray.store import Binding
from ray_testkit import replica_actors, serve_app


def lease_owner(db: Database) -> str | None:
    with db.read() as session:
        return session.scalar(select(Binding.lease_owner))


@pytest.mark.postgres
def test_one_ingress_replica_holds_a_binding_and_another_takes_it_over(tmp_path, new_postgres_database):
    """Two ingress replicas each run a binding runner; the one holding the binding is killed, and the
    binding is taken over (by the other, or the replica Serve starts instead) and goes on syncing."""
    import ray

    root = tmp_path / "photos"
    root.mkdir()
    (root / "first.jpg").write_bytes(jpeg("astronaut", scale=0.9))
    url = new_postgres_database()
    settings = Settings(
        data_dir=tmp_path,
        database_url=url,
        allowed_roots=[root],
        binding_scan_seconds=1.0,
        task_lease_seconds=3.0,
    )
    db = Database.connect(url, migrate=True)
    admin = access_keys.create_key(db, ADMIN_POLICY, is_admin=True)
    key = Key(admin.info.access_key_id, admin.secret)
    try:
        with serve_app(settings, Ingress={"num_replicas": 2}) as address:
            client = LiveImmray(address, settings, db, key).client()
            project, dataset = new_dataset(client)
            uri = client.create_binding(
                imm.CreateBindingRequest(project_name=project, dataset_name=dataset, uri=root.as_uri())
            ).body.binding.uri
            wait_incremental(client, project, dataset, uri)
            wait_files(client, project, dataset, [(root / "first.jpg").as_uri()])
            holder = lease_owner(db)
            replicas = replica_actors("Ingress")
            assert holder is not None and len(replicas) == 2
            pid = int(holder.split(":")[1])  # bindings@<host>:<pid>:<random>
            (killed,) = [replica for replica in replicas if replica.pid == pid]
            ray.kill(ray.get_actor(killed.name, namespace="serve"), no_restart=False)

            wait_for("another runner to take the binding over", lambda: lease_owner(db) not in (None, holder))
            (root / "second.jpg").write_bytes(jpeg("astronaut", mirror=True, scale=0.9))
            found = wait_files(
                client, project, dataset, [(root / n).as_uri() for n in ("first.jpg", "second.jpg")]
            )
            assert {file.object_status for file in found.values()} == {"Indexed"}
    finally:
        db.close()
