"""A backfill stores a batch of photos with ``indexing.analyze_files`` (the rows claimed in one statement,
the outcomes in one pass); the API stores one photo at a time (``indexing.analyze_file``). Given the same
photos, both must leave the same rows: statuses, Reasons, faces (new and tombstoned), attempts, leases,
fingerprints, and the request's notification."""

from __future__ import annotations

import functools
import json
import shutil
from pathlib import Path

import pytest
from live_immray import BACKENDS, database_url_for, new_postgres_database  # noqa: F401  (fixture)
from sqlalchemy import func, select

from immray.jobs.face_analysis import InProcessAnalysis
from immray.notify import validate_notification
from immray.services import datasets, indexing, projects
from immray.services.database import Database
from immray.services.input_files import InputFile
from immray.settings import NotifyTopic, Settings
from immray.sources import sources_for
from immray.store import Dataset, Figure, File, OutboxMessage

NAMES = ("portrait.png", "group.png", "broken.jpg", "gone.png")


def _record(db: Database, settings: Settings, dataset: str, root: Path) -> list[tuple[int, str]]:
    accepted = indexing.record_pending(
        db,
        sources_for(settings),
        indexing.IndexRequest(
            "store",
            dataset,
            [InputFile((root / name).as_uri()) for name in NAMES],
            "BatchIndexFileMeta",
            notification=validate_notification({"MNS": {"TopicName": "done"}}, settings.notify_topics),
        ),
    )
    return [(file_id, accepted.event_id) for file_id in accepted.file_ids]


def _state(db: Database, dataset: str) -> dict[str, tuple]:
    """Per file name: what a client or the next clustering task can see of it."""
    with db.read() as session:
        dataset_id = session.scalar(select(Dataset.id).where(Dataset.name == dataset))
        rows = session.scalars(select(File).where(File.dataset_id == dataset_id).order_by(File.id)).all()
        state = {}
        for row in rows:
            live = session.scalar(
                select(func.count(Figure.id)).where(Figure.file_id == row.id, Figure.deleted_at.is_(None))
            )
            state[Path(row.uri).name] = (
                row.object_status,
                row.reason,
                row.figure_count,
                live,
                row.attempts,
                row.analysis_lease_expires_at,
                row.fingerprint is not None,
                (row.image_width, row.image_height, row.content_type, row.size),
            )
        tombstoned = session.scalar(
            select(func.count(Figure.id)).where(
                Figure.dataset_id == dataset_id, Figure.deleted_at.is_not(None)
            )
        )
        notices = [
            (message.payload["type"], [(Path(f["URI"]).name, f["Error"]) for f in content["Files"]])
            for message in session.scalars(select(OutboxMessage).order_by(OutboxMessage.id))
            if (content := json.loads(message.payload["content"]))["DatasetName"] == dataset
        ]
    return {"files": state, "tombstoned": tombstoned, "notices": notices}


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_batch_stores_exactly_what_one_photo_at_a_time_stores(request, tmp_path, sample_photo, backend):
    root = tmp_path / "photos"
    root.mkdir()
    shutil.copy(sample_photo("portrait"), root / "portrait.png")
    shutil.copy(sample_photo("group"), root / "group.png")
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg after all")
    shutil.copy(sample_photo("astronaut"), root / "gone.png")
    url = database_url_for(request, backend, tmp_path)
    settings = Settings(
        data_dir=tmp_path,
        database_url=url,
        allowed_roots=[root],
        notify_topics={"done": NotifyTopic(url="redis://127.0.0.1:6379/0", stream="unused")},
    )
    db = Database.connect(url, migrate=True)
    projects.create_project(db, "store", projects.ProjectChanges())
    for dataset in ("one-by-one", "batched"):
        datasets.create_dataset(db, "store", dataset, datasets.DatasetChanges())
    faces = InProcessAnalysis(settings)
    model = faces.embedder_name(None)
    sources = sources_for(settings)

    def one_by_one(files):
        return [
            indexing.analyze_file(db, sources, functools.partial(faces.analyze, None), model, *file)
            for file in files
        ]

    def batched(files):
        outcomes = indexing.analyze_files(
            db, sources, functools.partial(faces.analyze_batch, None), model, files
        )
        return [status for status, _ in outcomes]

    try:
        first = {name: _record(db, settings, name, root) for name in ("one-by-one", "batched")}
        (root / "gone.png").unlink()  # recorded, then deleted before its analysis
        assert (
            one_by_one(first["one-by-one"])
            == batched(first["batched"])
            == [
                "Indexed",
                "Indexed",
                "Failed",
                "Failed",
            ]
        )
        before = _state(db, "batched")
        assert before == _state(db, "one-by-one")
        assert before["files"]["group.png"][3] > 1 and before["files"]["portrait.png"][3] == 1
        assert [len(files) for _, files in before["notices"]] == [4]  # the request's end, told once

        # Indexed again: portrait unchanged, group replaced by another photo, the rest still bad.
        shutil.copy(sample_photo("astronaut"), root / "group.png")
        second = {name: _record(db, settings, name, root) for name in ("one-by-one", "batched")}
        assert one_by_one(second["one-by-one"]) == batched(second["batched"])
        after = _state(db, "batched")
        assert after == _state(db, "one-by-one")
        assert after["files"]["portrait.png"][0] == "Indexed" and after["files"]["portrait.png"][3] == 1
        assert after["files"]["group.png"][3] == 1  # the astronaut's face, the group's tombstoned
        assert after["tombstoned"] == before["files"]["group.png"][3]
        assert len(after["notices"]) == 2
        assert batched(second["batched"]) == [None] * 4  # done: a late copy of the batch does nothing
    finally:
        db.close()
