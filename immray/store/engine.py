"""Engines and sessions for the two supported backends.

SQLite (the embedded default) is tuned for several threads and processes writing one file: WAL so readers
never block, a busy timeout so writers wait instead of failing, and ``BEGIN IMMEDIATE`` so a transaction
that reads and then writes takes the write lock up front; a deferred one would fail with "database is
locked" when another writer committed in between, and waiting cannot cure that. Sessions opened with
``read_only=True`` begin deferred and run beside a writer. PostgreSQL goes through psycopg 3.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import URL, Engine, create_engine, event, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

SQLITE_BUSY_TIMEOUT_S = 30.0
_BEGIN_OPTION = "immray_sqlite_begin"


class DatabaseURLError(ValueError):
    """The database URL cannot be used (malformed, or a backend immray does not support)."""


def normalize_url(url: str | URL) -> URL:
    """Parse ``url`` and pick psycopg 3 for plain ``postgresql://`` (and ``postgres://``) URLs."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise DatabaseURLError(f"malformed database URL {str(url)!r}: {exc}") from None
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    backend = parsed.get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        raise DatabaseURLError(f"unsupported database {backend!r}: use sqlite:/// or postgresql://")
    if backend == "sqlite" and parsed.drivername != "sqlite":
        raise DatabaseURLError(f"unsupported SQLite driver {parsed.drivername!r}: use sqlite:///PATH")
    return parsed


def is_sqlite_memory(url: URL) -> bool:
    return url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:")


def make_engine(url: str | URL, **kwargs: Any) -> Engine:
    """An engine for ``url`` with immray's connection settings; ``kwargs`` go to ``create_engine``."""
    parsed = normalize_url(url)
    if parsed.get_backend_name() == "postgresql":
        kwargs.setdefault("pool_pre_ping", True)
        return create_engine(parsed, **kwargs)

    if not is_sqlite_memory(parsed):
        _make_parent_dir(Path(str(parsed.database)))
    connect_args = kwargs.pop("connect_args", {})
    connect_args.setdefault("check_same_thread", False)
    connect_args.setdefault("timeout", SQLITE_BUSY_TIMEOUT_S)
    if is_sqlite_memory(parsed):
        kwargs.setdefault("poolclass", StaticPool)  # one shared connection, or each one sees its own DB
    engine = create_engine(parsed, connect_args=connect_args, **kwargs)
    _tune_sqlite(engine, memory=is_sqlite_memory(parsed))
    return engine


def _make_parent_dir(path: Path) -> None:
    """SQLite creates the file but not its directory, and says only "unable to open database file"."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DatabaseURLError(f"cannot create the directory of the SQLite database {path}: {exc}") from None


def _tune_sqlite(engine: Engine, *, memory: bool) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take BEGIN away from the sqlite3 module: it would skip it before SELECTs (see _on_begin).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
            if not memory:
                cursor.execute("PRAGMA journal_mode=WAL")
                # In WAL: a crashed process loses nothing committed; a power cut may lose the last commits.
                cursor.execute("PRAGMA synchronous=NORMAL")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        mode = connection.get_execution_options().get(_BEGIN_OPTION, "IMMEDIATE")
        connection.exec_driver_sql(f"BEGIN {mode}")


def session_factory(engine: Engine, *, read_only: bool = False) -> sessionmaker[Session]:
    """Sessions bound to ``engine``. Objects stay readable after commit (the API answers with them).

    ``read_only`` sessions must not write: on SQLite they begin deferred and run beside a writer; on
    PostgreSQL the transaction is READ ONLY.
    """
    bind = engine
    if read_only:
        if engine.dialect.name == "sqlite":
            bind = engine.execution_options(**{_BEGIN_OPTION: "DEFERRED"})
        else:
            bind = engine.execution_options(postgresql_readonly=True)
    return sessionmaker(bind=bind, expire_on_commit=False)
