"""The project use cases without HTTP: filtered paging across batches, and concurrent creation."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from live_immray import BACKENDS, database_url_for

from immray.protocol.errors import ImmError
from immray.services import listing, projects
from immray.services.database import Database
from immray.services.projects import ProjectChanges


@pytest.fixture(params=BACKENDS)
def db(request: pytest.FixtureRequest, tmp_path) -> Iterator[Database]:
    database = Database.connect(database_url_for(request, request.param, tmp_path), migrate=True)
    yield database
    database.close()


def test_filtered_pages_span_batches_without_skips_or_repeats(db: Database, monkeypatch):
    monkeypatch.setattr(listing, "BATCH", 3)  # many keyset batches per page
    names = [f"p{i:02d}" for i in range(20)]
    for name in reversed(names):
        projects.create_project(db, name, ProjectChanges())
    visible = {name for name in names if int(name[1:]) % 3 == 0}  # p00 p03 ... p18: 7 projects

    pages, token = [], ""
    while True:
        page = projects.list_projects(db, limit=2, token=token, visible=visible.__contains__)
        pages.append([info.name for info in page.items])
        token = page.next_token
        if not token:
            break
    assert pages == [["p00", "p03"], ["p06", "p09"], ["p12", "p15"], ["p18"]]

    exact = projects.list_projects(db, limit=7, visible=visible.__contains__)
    assert len(exact.items) == 7 and exact.next_token == ""  # no token that would lead to an empty page
    assert projects.list_projects(db, limit=5, visible=lambda name: False).items == []


def test_concurrent_creates_of_one_name_make_one_project(db: Database):
    outcomes: list[str] = []
    barrier = threading.Barrier(6)

    def create() -> None:
        barrier.wait()
        try:
            projects.create_project(db, "contested", ProjectChanges(description="mine"))
            outcomes.append("created")
        except ImmError as exc:
            outcomes.append(exc.code)

    threads = [threading.Thread(target=create) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["ResourceAlreadyExists"] * 5 + ["created"]
