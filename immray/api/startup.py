"""What `immray serve` does before it listens: data directory, migrations, the first-start admin key.

Kept apart from the click command so it is a plain function with a plain result, and every failure is a
``StartupError`` with a message for the operator rather than a traceback.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from alembic.util import CommandError
from sqlalchemy.exc import SQLAlchemyError

from immray.credentials import Credentials, CredentialsError, load_credentials, save_credentials
from immray.services import access_keys
from immray.services.access_keys import NewKey
from immray.services.database import Database
from immray.settings import Settings
from immray.store import DatabaseURLError, normalize_url


class StartupError(Exception):
    """The server cannot start; the message says why and what to do."""


@dataclass(frozen=True)
class Prepared:
    db: Database
    database: str  # the URL, password hidden
    admin_key: NewKey | None  # created by this start (first start only)
    credentials_path: Path
    credentials_error: str | None = None  # the key could not be saved: it must be shown all the same


def client_endpoint(host: str, port: int) -> str:
    """Where a local client reaches the server (a wildcard address is reached on loopback)."""
    if host in ("0.0.0.0", "", "::"):
        host = "127.0.0.1"
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{host}:{port}"


def check_roots(roots: list[Path]) -> list[Path]:
    """The allowed roots as absolute real paths; each must be an existing directory."""
    checked = []
    for root in roots:
        resolved = Path(os.path.realpath(root.expanduser()))
        if not resolved.is_dir():
            raise StartupError(f"--root {root}: not an existing directory")
        checked.append(resolved)
    return checked


def open_database(settings: Settings, *, migrate: bool = True) -> tuple[Database, str]:
    """The configured database, migrated to head; errors say which database and why."""
    try:
        settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise StartupError(f"cannot create the data directory {settings.data_dir}: {exc.strerror}") from None
    try:
        url = normalize_url(settings.resolved_database_url)
    except DatabaseURLError as exc:
        raise StartupError(str(exc)) from None
    shown = url.render_as_string(hide_password=True)
    try:
        db = Database.connect(url, migrate=migrate)
        if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
            _owner_only(Path(url.database))
        return db, shown
    except DatabaseURLError as exc:
        raise StartupError(str(exc)) from None
    except SQLAlchemyError as exc:
        raise StartupError(f"cannot open {shown}: {getattr(exc, 'orig', None) or exc}") from None
    except CommandError as exc:  # e.g. a database at a revision this version does not know
        raise StartupError(f"cannot upgrade {shown}: {exc}") from None


def _owner_only(database: Path) -> None:
    """The SQLite file holds the access keys' secrets: readable by its owner only (its -wal and -shm too)."""
    for path in (
        database,
        database.with_name(database.name + "-wal"),
        database.with_name(database.name + "-shm"),
    ):
        try:
            if path.exists() and stat.S_IMODE(path.stat().st_mode) & 0o077:
                path.chmod(0o600)
        except OSError:  # not ours to change (a shared file): the data directory's mode still applies
            pass


def prepare_server(settings: Settings) -> Prepared:
    """Migrate the database and, on the very first start, create the admin key and save it for the CLI.

    Later starts keep the key (even a revoked one) and only bring the saved endpoint up to date.
    """
    db, shown = open_database(settings)
    try:
        endpoint = client_endpoint(settings.host, settings.port)
        path = settings.credentials_path
        try:
            admin = access_keys.ensure_admin_key(db)
        except SQLAlchemyError as exc:
            raise StartupError(
                f"cannot create the admin key in {shown}: {getattr(exc, 'orig', None) or exc}"
            ) from None
        try:
            if admin is not None:
                save_credentials(path, Credentials(admin.info.access_key_id, admin.secret, endpoint))
            else:
                saved = load_credentials(path)
                if saved is not None and saved.endpoint != endpoint:
                    save_credentials(
                        path, Credentials(saved.access_key_id, saved.access_key_secret, endpoint)
                    )
        except CredentialsError as exc:
            return Prepared(db, shown, admin, path, credentials_error=str(exc))
        return Prepared(db, shown, admin, path)
    except BaseException:
        db.close()
        raise
