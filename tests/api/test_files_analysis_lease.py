"""One analysis at a time per Pending file. Every ingress replica re-submits the Pending files when it
starts, so a file may get a second job while an analysis works on it: that job finds the file's lease held
and does nothing (no second analysis, no attempt counted, faces stored once). A lease outlives its analysis
only when the analysis died; the sweep then submits the file again, and it is analysed once more."""

from __future__ import annotations

import functools
from datetime import timedelta
from typing import Any

import pytest
from live_immray import BACKENDS, database_url_for
from sqlalchemy import func, select, update

from immray.jobs.face_analysis import InProcessAnalysis
from immray.jobs.submission import install_backend, uninstall_backend
from immray.services import datasets, indexing, projects
from immray.services.database import Database
from immray.services.input_files import InputFile
from immray.settings import Settings
from immray.sources import sources_for
from immray.store import Figure, File, utcnow


class RecordingBackend:
    """A job backend that keeps what is submitted, for the test to run (the ingress's runs it at once)."""

    def __init__(self) -> None:
        self.jobs: list[tuple[str, dict[str, Any]]] = []

    def submit(self, job_name: str, payload: dict[str, Any]) -> None:
        self.jobs.append((job_name, payload))


@pytest.fixture
def pending_photos(request, tmp_path, sample_photo):
    """(db, settings, [(file_id, event_id)]) of two real photos recorded Pending in a new dataset."""
    backend_name = request.node.callspec.params["backend"]
    root = tmp_path / "photos"
    root.mkdir()
    uris = []
    for name in ("portrait", "astronaut"):
        path = root / f"{name}.png"
        path.write_bytes(sample_photo(name).read_bytes())
        uris.append(path.as_uri())
    url = database_url_for(request, backend_name, tmp_path)
    settings = Settings(data_dir=tmp_path, database_url=url, allowed_roots=[root])
    db = Database.connect(url, migrate=True)
    projects.create_project(db, "lease", projects.ProjectChanges())
    datasets.create_dataset(db, "lease", "photos", datasets.DatasetChanges())
    accepted = indexing.record_pending(
        db,
        sources_for(settings),
        indexing.IndexRequest("lease", "photos", [InputFile(uri) for uri in uris], "BatchIndexFileMeta"),
    )
    yield db, settings, [(file_id, accepted.event_id) for file_id in accepted.file_ids]
    db.close()


def _row(db: Database, file_id: int) -> File:
    with db.read() as session:
        row = session.get(File, file_id)
        session.expunge(row)
        return row


def _faces(db: Database, file_id: int) -> int:
    with db.read() as session:
        return session.scalar(select(func.count(Figure.id)).where(Figure.file_id == file_id))


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_second_job_for_a_file_being_analysed_does_nothing(pending_photos, backend):
    db, settings, files = pending_photos
    (file_id, event_id), _ = files
    faces = InProcessAnalysis(settings)
    analyze = functools.partial(faces.analyze, None)
    run = functools.partial(
        indexing.analyze_file, db, sources_for(settings), embedding_model=faces.embedder_name(None)
    )
    during: list[Any] = []

    def analyze_with_a_duplicate_arriving(data: bytes):
        during.append(run(analyze, file_id=file_id, event_id=event_id))  # another replica's copy of the job
        return analyze(data)

    assert run(analyze_with_a_duplicate_arriving, file_id=file_id, event_id=event_id) == "Indexed"
    assert during == [None]  # the duplicate found the lease held: it neither analysed nor stored
    row = _row(db, file_id)
    assert (row.attempts, row.analysis_lease_expires_at, row.figure_count) == (1, None, 1)
    assert _faces(db, file_id) == 1
    assert run(analyze, file_id=file_id, event_id=event_id) is None  # done: a late copy does nothing
    assert _row(db, file_id).attempts == 1


@pytest.mark.parametrize("backend", BACKENDS)
def test_only_files_whose_analysis_died_are_submitted_again(pending_photos, backend):
    db, settings, files = pending_photos
    (held_id, event_id), (lost_id, _) = files
    sources = sources_for(settings)
    with db.write() as session:  # one analysis runs now; the other's replica died before its lease ended
        for file_id, expires in (
            (held_id, utcnow() + timedelta(minutes=5)),
            (lost_id, utcnow() - timedelta(seconds=1)),
        ):
            session.execute(
                update(File).where(File.id == file_id).values(analysis_lease_expires_at=expires, attempts=1)
            )
    jobs = RecordingBackend()
    install_backend(jobs)
    try:
        assert indexing.requeue_pending(db) == 1  # a starting replica leaves the held file to its analysis
        assert indexing.requeue_expired(db) == 1  # the sweep takes the lost one
    finally:
        uninstall_backend(jobs)
    assert [payload["file_id"] for _, payload in jobs.jobs] == [lost_id, lost_id]
    faces = InProcessAnalysis(settings)
    analyze = functools.partial(faces.analyze, None)
    outcomes = [
        indexing.analyze_file(
            db, sources, analyze, faces.embedder_name(None), payload["file_id"], payload["event_id"]
        )
        for _, payload in jobs.jobs
    ]
    assert outcomes == ["Indexed", None]  # the second copy found the first's lease, then the file done
    assert (_row(db, lost_id).attempts, _faces(db, lost_id)) == (2, 1)
    assert indexing.analyze_file(db, sources, analyze, faces.embedder_name(None), held_id, event_id) is None
    assert _row(db, held_id).object_status == "Pending"  # still its live analysis's
