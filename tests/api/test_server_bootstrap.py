"""``build_app``: the registered actions and the background services started and stopped with the server."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field

import pytest
from live_server import serve

from immray.api.bootstrap import build_app
from immray.services.database import Database
from immray.settings import Settings

PROJECT_AND_DATASET_ACTIONS = {
    "CreateProject",
    "GetProject",
    "ListProjects",
    "UpdateProject",
    "DeleteProject",
    "CreateDataset",
    "GetDataset",
    "ListDatasets",
    "UpdateDataset",
    "DeleteDataset",
}


@dataclass
class Recorder:
    """A background service that records what the server did with it, in a shared journal."""

    name: str
    journal: list[str]
    fail_on_start: bool = False
    running: threading.Event = field(default_factory=threading.Event)

    def start(self) -> None:
        if self.fail_on_start:
            raise RuntimeError(f"{self.name} cannot start")
        self.running.set()
        self.journal.append(f"start {self.name}")

    def stop(self) -> None:
        self.running.clear()
        self.journal.append(f"stop {self.name}")


@dataclass
class AsyncRecorder(Recorder):
    async def start(self) -> None:  # type: ignore[override]
        await asyncio.sleep(0)
        Recorder.start(self)

    async def stop(self) -> None:  # type: ignore[override]
        await asyncio.sleep(0)
        Recorder.stop(self)


@pytest.fixture
def settings(tmp_path) -> Settings:
    settings = Settings(data_dir=tmp_path)
    Database.connect(settings.resolved_database_url, migrate=True).close()
    return settings


def test_every_project_and_dataset_action_is_registered(settings: Settings):
    app = build_app(settings, services=lambda context: [])
    names = {action.name for action in app.state.actions}
    assert names >= PROJECT_AND_DATASET_ACTIONS


def test_background_services_start_in_order_and_stop_in_reverse(settings: Settings):
    journal: list[str] = []
    services = [Recorder("pool", journal), AsyncRecorder("outbox", journal)]
    app = build_app(settings, services=lambda context: services)
    with serve(app):
        assert journal == ["start pool", "start outbox"]
        assert all(service.running.is_set() for service in services)
    assert journal == ["start pool", "start outbox", "stop outbox", "stop pool"]
    assert not any(service.running.is_set() for service in services)


def test_a_service_that_cannot_start_stops_those_started_before_it(settings: Settings):
    journal: list[str] = []
    services = [Recorder("pool", journal), Recorder("broken", journal, fail_on_start=True)]
    app = build_app(settings, services=lambda context: services)

    async def start_and_stop() -> None:
        async with app.router.lifespan_context(app):
            pass

    with pytest.raises(RuntimeError, match="broken cannot start"):
        asyncio.run(start_and_stop())
    assert journal == ["start pool", "stop pool"]


def test_services_are_built_with_the_server_context(settings: Settings):
    seen = []
    build_app(settings, services=lambda context: seen.append(context) or [])
    (context,) = seen
    assert context.settings is settings and context.db.engine.url.database.endswith("immray.db")
