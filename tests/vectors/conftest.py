"""Milvus for tests/vectors: every test runs on milvus-lite (this process's own file) and on a real Milvus
server (the session's, ``milvus_server_uri`` of tests/conftest.py), each test
with a collection prefix of its own (dropped at its end)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from immray.settings import Settings
from immray.vectors import endpoint, registry


@pytest.fixture(params=["lite", "server"])
def milvus_settings(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Settings]:
    """Settings whose vectors live in milvus-lite under tmp_path, or in the session's Milvus server."""
    prefix = f"t_{uuid.uuid4().hex[:12]}"
    values: dict = {"data_dir": tmp_path / "data", "milvus_collection_prefix": prefix}
    if request.param == "server":
        values["milvus_uri"] = request.getfixturevalue("milvus_server_uri")
    settings = Settings(**values)
    yield settings
    store = registry.open_store(settings)
    for name in store.collections():
        store.client.drop_collection(name)
    registry.forget(settings)
    endpoint.release(settings)
