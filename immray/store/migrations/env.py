"""Alembic environment of immray's store.

Used two ways: by ``immray.store.upgrade``, which hands over an open connection inside a transaction
(``config.attributes["connection"]``), and by the ``alembic`` command during development, which gives a
URL with ``-x url=...`` (or ``sqlalchemy.url``) or falls back to immray's configured database.
"""

from __future__ import annotations

from logging.config import fileConfig

from alembic import context
from sqlalchemy import Connection

from immray.store.engine import make_engine, normalize_url
from immray.store.migrate import migration_transaction
from immray.store.models import Base

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option("sqlalchemy.url")
    if url:
        return url
    from immray.settings import get_settings

    return get_settings().resolved_database_url


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        compare_server_default=True,
    )


def run_offline() -> None:
    url = normalize_url(_url())
    context.configure(
        url=url,
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=url.get_backend_name() == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    given = config.attributes.get("connection")
    if given is not None:
        # immray.store.upgrade owns the transaction and the lock.
        _configure(given)
        context.run_migrations()
        return
    if config.config_file_name is not None:
        fileConfig(config.config_file_name)
    engine = make_engine(_url())
    try:
        with migration_transaction(engine) as connection:
            _configure(connection)
            context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
