"""Files whose analysis was lost with its process: accepted while nothing analysed photos (the app without
its Ray services), they wait Pending and are analysed when the Serve application starts on the same
database; a file cut short too often fails instead."""

from __future__ import annotations

import pytest
from live_immray import BACKENDS, Key, LiveImmray, database_url_for
from live_indexing import batch_index, get_files, new_dataset, wait_done
from live_server import serve
from sqlalchemy import update

from immray.api.bootstrap import build_app
from immray.policy import ADMIN_POLICY
from immray.services import access_keys
from immray.services.database import Database
from immray.settings import Settings
from immray.store import File
from ray_testkit import serve_app


@pytest.mark.parametrize("backend", BACKENDS)
def test_pending_files_are_analysed_at_the_next_start(request, tmp_path, backend, sample_photo):
    root = tmp_path / "photos"
    root.mkdir()
    portrait, astronaut = root / "portrait.png", root / "astronaut.png"
    portrait.write_bytes(sample_photo("portrait").read_bytes())
    astronaut.write_bytes(sample_photo("astronaut").read_bytes())
    url = database_url_for(request, backend, tmp_path)
    settings = Settings(data_dir=tmp_path, database_url=url, allowed_roots=[root])
    db = Database.connect(url, migrate=True)
    admin = access_keys.create_key(db, ADMIN_POLICY, is_admin=True)
    key = Key(admin.info.access_key_id, admin.secret)
    uris = [portrait.as_uri(), astronaut.as_uri()]
    try:
        with serve(build_app(settings, db=db, services=lambda context: [])) as address:  # no worker runs
            client = LiveImmray(address, settings, db, key).client()
            project, dataset = new_dataset(client)
            batch_index(client, project, dataset, uris)
            assert {f.object_status for f in get_files(client, project, dataset, uris).values()} == {
                "Pending"
            }
        with db.write() as session:  # the astronaut's analysis was already cut short as often as allowed
            session.execute(
                update(File).where(File.uri == uris[1]).values(attempts=settings.task_max_attempts)
            )
        with serve_app(settings) as address:
            client = LiveImmray(address, settings, db, key).client()
            files = wait_done(client, project, dataset, uris)
    finally:
        db.close()
    assert (files[uris[0]].object_status, files[uris[0]].figure_count) == ("Indexed", 1)
    assert files[uris[1]].object_status == "Failed" and "cut short" in files[uris[1]].reason
