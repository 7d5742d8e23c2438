"""Shared by tests/tasks and tests/notify: a migrated database on each backend, settings, an app on uvicorn.

``db`` runs every test on a new SQLite file and, when IMMRAY_TEST_POSTGRES_URL is set (``postgres``
marker), on a throw-away PostgreSQL database made for this session and emptied before each test.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from alibabacloud_imm20200930.client import Client
from alibabacloud_tea_openapi.models import Config
from sqlalchemy.pool import NullPool

from immray.services.database import Database
from immray.settings import Settings
from immray.store import Base, Dataset, Project, head_revision, make_engine, normalize_url, upgrade
from immray.store.migrate import current_revision

POSTGRES_URL = os.environ.get("IMMRAY_TEST_POSTGRES_URL") or None
BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
T = TypeVar("T")


@pytest.fixture(scope="session")
def new_tasks_postgres_database() -> Iterator[Callable[[], str]]:
    """``new_tasks_postgres_database()`` -> URL of a new PostgreSQL database; all dropped after the session."""
    if not POSTGRES_URL:
        pytest.skip("IMMRAY_TEST_POSTGRES_URL is not set")
    admin = make_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    created: list[str] = []

    def create() -> str:
        name = f"immray_tasks_{uuid.uuid4().hex[:12]}"
        with admin.connect() as connection:
            connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
        created.append(name)
        return normalize_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)

    try:
        yield create
    finally:
        with admin.connect() as connection:
            for name in created:
                connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


@pytest.fixture(scope="session")
def tasks_postgres_url(new_tasks_postgres_database: Callable[[], str]) -> str:
    """The PostgreSQL database the function-scoped ``db_url`` empties before each test."""
    return new_tasks_postgres_database()


def fresh_database_url(request: pytest.FixtureRequest, backend: str, data_dir: Path) -> str:
    """A database of its own for a module-scoped server, migrated to head."""
    if backend == "sqlite":
        url = f"sqlite:///{data_dir / 'immray.db'}"
    else:
        url = request.getfixturevalue("new_tasks_postgres_database")()
    upgrade(url)
    return url


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database at the head revision: a new SQLite file, or the session's PostgreSQL emptied."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'data' / 'immray.db'}"
        upgrade(url)
        return url
    url = request.getfixturevalue("tasks_postgres_url")
    engine = make_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            at_head = current_revision(connection) == head_revision()
        if at_head:
            with engine.begin() as connection:
                for table in reversed(Base.metadata.sorted_tables):
                    connection.execute(table.delete())
        else:
            upgrade(engine)
    finally:
        engine.dispose()
    return url


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    database = Database.connect(db_url)
    yield database
    database.close()


def make_settings(db_url: str, data_dir: Path, **overrides: Any) -> Settings:
    """Settings for a test: quick polls and short leases, so the suite waits little."""
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "database_url": db_url,
        "task_lease_seconds": 2.0,
        "task_poll_seconds": 0.1,
        "notify_poll_seconds": 0.05,
        "notify_backoff_seconds": 0.05,
        "notify_backoff_max_seconds": 0.5,
    }
    values.update(overrides)
    return Settings(**values)


def add_dataset(db: Database, project: str = "proj", dataset: str = "ds") -> int:
    """Project (made if missing) and dataset rows; returns the dataset's id."""
    with db.write() as session:
        found = session.query(Project).filter_by(name=project).one_or_none() or Project(name=project)
        row = Dataset(project=found, name=dataset)
        session.add(row)
        session.flush()
        return row.id


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = 30.0, every: float = 0.05) -> T:
    """Poll ``probe`` until it returns something truthy; fail naming ``what`` if it never does."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(every)


@contextlib.contextmanager
def serve(app: Any) -> Iterator[str]:
    """``app`` on uvicorn (immray's server config, lifespan on) in a thread; yields ``127.0.0.1:PORT``."""
    import uvicorn

    from immray.api import server_config
    from immray.api.server import bound_socket

    sock = bound_socket("127.0.0.1", 0)
    port = sock.getsockname()[1]
    server = uvicorn.Server(server_config(app, "127.0.0.1", port, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        wait_for("the test server to start", lambda: server.started or not thread.is_alive(), timeout=20)
        if not server.started:
            raise RuntimeError("the test server did not start")
        yield f"127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


def sdk_client(address: str, access_key_id: str, secret: str) -> Client:
    return Client(
        Config(
            access_key_id=access_key_id,
            access_key_secret=secret,
            endpoint=address,
            protocol="http",
            region_id="cn-hangzhou",
        )
    )
