"""Fixtures: one live immray API per test module, with the harness's actions and keys."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from alibabacloud_imm20200930.client import Client
from harness import KEYS, Seen, build_actions, deny_reader_writes, sdk_client
from live_immray import immray, new_postgres_database  # noqa: F401  (fixtures: the whole server)
from live_server import serve
from people_testkit import people_server  # noqa: F401  (fixture: a live server with the people photos)

from immray.api import create_app


@pytest.fixture(scope="module")
def seen() -> Seen:
    return Seen()


@pytest.fixture(scope="module")
def address(seen: Seen) -> Iterator[str]:
    app = create_app(build_actions(seen), KEYS.get, authorize=deny_reader_writes)
    with serve(seen.recording(app)) as address:
        yield address


@pytest.fixture()
def client(address: str) -> Client:
    return sdk_client(address)
