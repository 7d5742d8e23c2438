"""Store fixtures: every test runs against a real SQLite file and, when configured, real PostgreSQL.

PostgreSQL tests get a throw-away database created for this session (so parallel runs never collide) and
an empty ``public`` schema per test.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool

from immray.store import (
    Base,
    Dataset,
    Figure,
    FigureCluster,
    File,
    Project,
    head_revision,
    make_engine,
    normalize_url,
    session_factory,
    upgrade,
)
from immray.store.migrate import current_revision

POSTGRES_URL = os.environ.get("IMMRAY_TEST_POSTGRES_URL") or None


@pytest.fixture(scope="session")
def postgres_database_url() -> Iterator[str]:
    """A database of its own on the test server, dropped when the session ends."""
    if not POSTGRES_URL:
        pytest.skip("IMMRAY_TEST_POSTGRES_URL is not set")
    admin = make_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    name = f"immray_test_{uuid.uuid4().hex[:12]}"
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield normalize_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path) -> str:
    """A new SQLite file, or the session's PostgreSQL database (emptied by the engine fixtures)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'data' / 'immray.db'}"
    return request.getfixturevalue("postgres_database_url")


@pytest.fixture
def empty_engine(database_url: str) -> Iterator[Engine]:
    """An engine on a database without any table."""
    engine = make_engine(database_url)
    if engine.dialect.name == "postgresql":
        _drop_everything(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    """An engine on an empty database migrated to head.

    PostgreSQL migrations take most of a second, so a database already at head is emptied instead.
    """
    engine = make_engine(database_url)
    if engine.dialect.name == "postgresql" and _revision(engine) == head_revision():
        with engine.begin() as connection:  # DELETE: TRUNCATE costs half a second for these small tables
            for table in reversed(Base.metadata.sorted_tables):
                connection.execute(table.delete())
    else:
        if engine.dialect.name == "postgresql":
            _drop_everything(engine)
        upgrade(engine)
    yield engine
    engine.dispose()


def _drop_everything(engine: Engine) -> None:
    with engine.begin() as connection:
        connection.exec_driver_sql("DROP SCHEMA public CASCADE")
        connection.exec_driver_sql("CREATE SCHEMA public")


def _revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return current_revision(connection)


@pytest.fixture
def sessions(engine: Engine) -> sessionmaker[Session]:
    return session_factory(engine)


@dataclass
class Seed:
    """Builds the rows most tests need, each in its own committed transaction."""

    sessions: sessionmaker[Session]

    def new_figure(self, dataset_id: int, file_id: int | None, seed: int = 0, **values) -> Figure:
        """A figure not yet added: a plausible box and a random 128-d embedding."""
        return make_figure(dataset_id, file_id, seed, **values)

    def dataset(self, project: str = "proj", dataset: str = "ds") -> int:
        with self.sessions.begin() as session:
            found = session.query(Project).filter_by(name=project).one_or_none()
            found = found or Project(name=project)
            row = Dataset(project=found, name=dataset)
            session.add(row)
            session.flush()
            return row.id

    def file(self, dataset_id: int, uri: str) -> int:
        with self.sessions.begin() as session:
            row = File(dataset_id=dataset_id, uri=uri)
            session.add(row)
            session.flush()
            return row.id

    def cluster(self, dataset_id: int, **values) -> int:
        with self.sessions.begin() as session:
            row = FigureCluster(dataset_id=dataset_id, **values)
            session.add(row)
            session.flush()
            return row.id

    def figure(self, dataset_id: int, file_id: int | None, seed: int = 0, **values) -> int:
        with self.sessions.begin() as session:
            row = make_figure(dataset_id, file_id, seed, **values)
            session.add(row)
            session.flush()
            return row.id


def make_figure(dataset_id: int, file_id: int | None, seed: int = 0, **values) -> Figure:
    figure = Figure(dataset_id=dataset_id, file_id=file_id, left=10, top=20, width=100, height=120, **values)
    figure.set_vector(np.random.default_rng(seed).standard_normal(128), model="test-model")
    return figure


@pytest.fixture
def seed(sessions: sessionmaker[Session]) -> Seed:
    return Seed(sessions)
