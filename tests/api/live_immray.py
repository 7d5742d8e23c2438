"""A live immray server, the Serve application on the session's Ray, on a real database, for tests that
drive it with the SDK.

``immray`` (module-scoped, once per backend) starts the whole server on a fresh SQLite file, and on a
fresh PostgreSQL database when IMMRAY_TEST_POSTGRES_URL is set (the ``postgres`` marker). Tests share it
within a module and keep out of each other's way with ``unique()`` names.
"""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from alibabacloud_imm20200930.client import Client
from alibabacloud_tea_openapi import utils_models
from alibabacloud_tea_openapi.exceptions import ClientException
from alibabacloud_tea_openapi.utils import Utils
from darabonba.runtime import RuntimeOptions
from harness import sdk_client
from sqlalchemy.pool import NullPool

from immray.policy import ADMIN_POLICY
from immray.protocol.signing import encode_query, sign
from immray.services import access_keys
from immray.services.database import Database
from immray.settings import Settings
from immray.store import make_engine, normalize_url
from ray_testkit import fresh_namespace, serve_app

POSTGRES_URL = os.environ.get("IMMRAY_TEST_POSTGRES_URL") or None
BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
_counter = itertools.count()


@dataclass(frozen=True)
class Key:
    access_key_id: str
    secret: str


@dataclass
class LiveImmray:
    address: str
    settings: Settings
    db: Database
    admin: Key
    _clients: dict[Key, Client] = field(default_factory=dict)

    @property
    def backend(self) -> str:
        return self.db.engine.dialect.name

    def client(self, key: Key | None = None) -> Client:
        key = key or self.admin
        if key not in self._clients:
            self._clients[key] = sdk_client(self.address, key.access_key_id, key.secret)
        return self._clients[key]

    def new_key(self, policy: dict[str, Any]) -> Key:
        created = access_keys.create_key(self.db, policy)
        return Key(created.info.access_key_id, created.secret)

    def call(self, action: str, query: dict[str, str], key: Key | None = None) -> dict[str, Any]:
        """``action`` with ``query`` exactly as given (a JSON value the typed models would never produce),
        sent by the official SDK's own ``call_api`` as its generated methods do; 4xx raise ClientException."""
        params = utils_models.Params(
            action=action,
            version="2020-09-30",
            protocol="HTTPS",
            pathname="/",
            method="POST",
            auth_type="AK",
            style="RPC",
            req_body_type="formData",
            body_type="json",
        )
        request = utils_models.OpenApiRequest(query=Utils.query(query))
        return self.client(key).call_api(params, request, RuntimeOptions())["body"]

    def post(self, action: str, query: dict[str, str], key: Key | None = None) -> httpx.Response:
        """A request the SDK would never send (bad JSON, odd shapes), signed like the SDK signs."""
        key = key or self.admin
        headers = sign(
            access_key_id=key.access_key_id, secret=key.secret, action=action, host=self.address, query=query
        )
        return httpx.post(f"http://{self.address}/?{encode_query(query)}", headers=headers)


def unique(stem: str = "t") -> str:
    """A name no other test uses: IMM's naming rule holds (letter first, [A-Za-z0-9_-])."""
    return f"{stem}{next(_counter)}_{uuid.uuid4().hex[:8]}"


def sdk_error(call: Callable[[], Any]) -> ClientException:
    """The SDK's exception for a 4xx answer (its ``code`` is IMM's error code)."""
    with pytest.raises(ClientException) as caught:
        call()
    return caught.value


@pytest.fixture(scope="session")
def new_postgres_database() -> Iterator[Callable[[], str]]:
    """``new_postgres_database()`` -> URL of a fresh database; all of them are dropped after the session."""
    if not POSTGRES_URL:
        pytest.skip("IMMRAY_TEST_POSTGRES_URL is not set")
    admin = make_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    created: list[str] = []

    def create() -> str:
        name = f"immray_api_{uuid.uuid4().hex[:12]}"
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


def database_url_for(request: pytest.FixtureRequest, backend: str, data_dir: Path) -> str:
    if backend == "sqlite":
        return f"sqlite:///{data_dir / 'immray.db'}"
    return request.getfixturevalue("new_postgres_database")()


@pytest.fixture(scope="module", params=BACKENDS)
def immray(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveImmray]:
    """The whole server (every registered action, store-backed keys, nonces and policies) on a new database."""
    data_dir = tmp_path_factory.mktemp("immray")
    url = database_url_for(request, request.param, data_dir)
    settings = Settings(data_dir=data_dir, database_url=url, ray_namespace=fresh_namespace())
    db = Database.connect(url, migrate=True)
    admin = access_keys.create_key(db, ADMIN_POLICY, is_admin=True)
    try:
        with serve_app(settings) as address:
            yield LiveImmray(address, settings, db, Key(admin.info.access_key_id, admin.secret))
    finally:
        db.close()
