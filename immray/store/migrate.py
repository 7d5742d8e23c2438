"""Run the Alembic migrations from code: ``immray db upgrade`` and the server's start both call this.

Safe to run from several processes at once: the whole upgrade is one transaction, serialised by SQLite's
write lock or by a PostgreSQL advisory lock, and the second runner finds the schema already at head.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import URL, Connection, Engine

from immray.store.engine import make_engine

STORE_DIR = Path(__file__).resolve().parent
MIGRATIONS_DIR = STORE_DIR / "migrations"
ALEMBIC_INI = STORE_DIR / "alembic.ini"

# Any constant will do; it only has to be the same for every immray process on the server.
_PG_MIGRATION_LOCK = 0x66616365  # "face"


@dataclass(frozen=True)
class UpgradeResult:
    before: str | None  # the revision found, None for an empty database
    after: str

    @property
    def changed(self) -> bool:
        return self.before != self.after


def alembic_config() -> Config:
    """The Alembic configuration of the packaged migrations (also usable with the ``alembic`` command)."""
    config = Config(str(ALEMBIC_INI)) if ALEMBIC_INI.exists() else Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise RuntimeError("the packaged migrations have no head revision")
    return head


def current_revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def lock_for_migration(connection: Connection) -> None:
    """Serialise concurrent upgraders; must run inside the migration's transaction."""
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_MIGRATION_LOCK})")
    # SQLite: the transaction began IMMEDIATE (see engine.py), so it already holds the write lock.


def upgrade(url_or_engine: str | URL | Engine, revision: str = "head") -> UpgradeResult:
    """Bring the database to ``revision`` (default: the newest). Idempotent."""
    if isinstance(url_or_engine, Engine):
        return _upgrade(url_or_engine, revision)
    engine = make_engine(url_or_engine)
    try:
        return _upgrade(engine, revision)
    finally:
        engine.dispose()


def _upgrade(engine: Engine, revision: str) -> UpgradeResult:
    config = alembic_config()
    with migration_transaction(engine) as connection:
        before = current_revision(connection)
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
        after = current_revision(connection)
    if after is None:
        raise RuntimeError("the migrations ran but left no revision behind")
    return UpgradeResult(before=before, after=after)


@contextmanager
def migration_transaction(engine: Engine) -> Iterator[Connection]:
    """A connection in a transaction that holds the migration lock; commits on success.

    On SQLite, foreign keys are off meanwhile: batch migrations copy and drop tables, and with foreign
    keys on the drop would cascade. The pragma only takes effect outside a transaction, hence the driver
    connection; the keys are checked before commit instead.
    """
    with engine.connect() as connection:
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:
            connection.connection.driver_connection.execute("PRAGMA foreign_keys=OFF")
        try:
            with connection.begin():
                lock_for_migration(connection)
                yield connection
                if sqlite:
                    _check_foreign_keys(connection)
        finally:
            if sqlite:
                connection.connection.driver_connection.execute("PRAGMA foreign_keys=ON")


def _check_foreign_keys(connection: Connection) -> None:
    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
    if broken:
        raise RuntimeError(f"migration left rows with dangling foreign keys: {broken[:5]}")
