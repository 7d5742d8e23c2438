"""Engines: URL handling and the SQLite settings immray relies on."""

from __future__ import annotations

import pytest
from sqlalchemy import select, text

from immray.store import DatabaseURLError, Project, make_engine, normalize_url, session_factory, upgrade


@pytest.mark.parametrize(
    "given, driver",
    [
        ("postgresql://u:p@db:5432/fg", "postgresql+psycopg"),
        ("postgres://u@db/fg", "postgresql+psycopg"),
        ("postgresql+psycopg://u@db/fg", "postgresql+psycopg"),
        ("sqlite:////var/lib/fg/immray.db", "sqlite"),
        ("sqlite://", "sqlite"),
    ],
)
def test_urls_are_normalised(given: str, driver: str) -> None:
    assert normalize_url(given).drivername == driver


@pytest.mark.parametrize(
    "given, message",
    [
        ("mysql://u@db/fg", "unsupported database 'mysql'"),
        ("sqlite+pysqlcipher:///x.db", "unsupported SQLite driver"),
        ("not a url", "malformed database URL"),
        ("", "malformed database URL"),
    ],
)
def test_unusable_urls_are_refused_clearly(given: str, message: str) -> None:
    with pytest.raises(DatabaseURLError, match=message):
        make_engine(given)


def test_sqlite_file_settings(tmp_path) -> None:
    path = tmp_path / "new" / "dir" / "immray.db"
    engine = make_engine(f"sqlite:///{path}")
    try:
        with engine.connect() as connection:
            pragma = lambda name: connection.exec_driver_sql(f"PRAGMA {name}").scalar()  # noqa: E731
            assert pragma("journal_mode") == "wal"
            assert pragma("foreign_keys") == 1
            assert pragma("busy_timeout") == 30_000
        assert path.exists()  # the directory was created
    finally:
        engine.dispose()


def test_sqlite_in_memory_is_one_database_for_every_session() -> None:
    engine = make_engine("sqlite://")
    try:
        upgrade(engine)
        sessions = session_factory(engine)
        with sessions.begin() as session:
            session.add(Project(name="p"))
        with sessions() as session:
            assert session.scalars(select(Project.name)).all() == ["p"]
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_a_plain_postgresql_url_goes_through_psycopg(postgres_database_url: str) -> None:
    plain = postgres_database_url.replace("postgresql+psycopg://", "postgresql://", 1)
    assert plain.startswith("postgresql://")
    engine = make_engine(plain)
    try:
        assert engine.dialect.driver == "psycopg"
        with engine.connect() as connection:
            assert connection.execute(text("SELECT 1")).scalar() == 1
    finally:
        engine.dispose()
