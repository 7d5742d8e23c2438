"""`immray vectors check` finds a deliberately removed vector, `immray vectors rebuild` restores it."""

from __future__ import annotations

import json

from click.testing import CliRunner
from dataset_kit import DatasetKit
from faces_kit import people_faces

from immray.cli import main
from immray.services.database import Database
from immray.settings import get_settings
from immray.vectors import attach, open_store


def test_check_finds_a_removed_vector_and_rebuild_restores_it(milvus_settings, monkeypatch):
    milvus_settings.data_dir.mkdir(parents=True, exist_ok=True)
    db = Database.connect(milvus_settings.resolved_database_url, migrate=True)
    attach(db, milvus_settings)
    kit = DatasetKit(db, milvus_settings, project="photos", name="family")
    raw, _ = people_faces(3, 3, seed=9)
    for lo in range(0, 9, 3):
        kit.add_photo(raw[lo : lo + 3])
    victim = kit.live_faces()[4]
    open_store(milvus_settings).delete_keys([victim])
    db.close()

    monkeypatch.setenv("IMMRAY_MILVUS_COLLECTION_PREFIX", milvus_settings.milvus_collection_prefix)
    if milvus_settings.milvus_uri:
        monkeypatch.setenv("IMMRAY_MILVUS_URI", milvus_settings.milvus_uri)
    get_settings.cache_clear()  # the CLI reads the environment once per process
    data = ["vectors", "--data-dir", str(milvus_settings.data_dir)]
    runner = CliRunner()
    found = runner.invoke(main, [*data, "check", "--json"])
    assert found.exit_code == 1, found.output
    (report,) = [json.loads(line) for line in found.output.splitlines()]
    assert (report["dataset"], report["missing"], report["faces"], report["vectors"]) == (
        "family",
        [victim],
        9,
        8,
    )

    rebuilt = runner.invoke(main, [*data, "rebuild", "--dataset", "photos/family"])
    assert rebuilt.exit_code == 0, rebuilt.output
    assert "8 vector(s) deleted, 9 written" in rebuilt.output
    clean = runner.invoke(main, [*data, "check"])
    assert clean.exit_code == 0, clean.output
    assert "family (id 1): 9 faces, 9 vectors: ok" in clean.output

    missing = runner.invoke(main, [*data, "rebuild", "--dataset", "photos/nope"])
    assert missing.exit_code != 0 and "no dataset photos/nope" in missing.output
    get_settings.cache_clear()
