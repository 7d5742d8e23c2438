"""The embedded milvus-lite server (what `immray serve` runs beside its processes) started again when it
dies: on the same address and file, with its vectors, and a store that used it before carries on (its client
reconnects, the released collection is loaded again) after answering the outage as IMM's ServiceUnavailable."""

from __future__ import annotations

import os
import signal
import time

import numpy as np
import pytest

from immray.settings import Settings
from immray.vectors import open_store
from immray.vectors.endpoint import LiteServer, running_server
from immray.vectors.resilient import VectorStoreUnavailable


def _eventually(call, timeout: float = 30.0):
    """``call()`` once Milvus answers it (a restarted server takes a moment to serve its gRPC calls)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return call()
        except VectorStoreUnavailable:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def test_a_dead_lite_server_is_started_again_and_its_users_carry_on(tmp_path):
    lite = LiteServer(Settings(data_dir=tmp_path))
    uri = lite.start()
    try:
        settings = Settings(data_dir=tmp_path, milvus_uri=uri, milvus_collection_prefix="restart")
        store = open_store(settings)
        collection = store.collection("m", 4)
        vectors = np.eye(4, dtype=np.float32)
        store.upsert(collection, 1, [10, 11, 12, 13], vectors)
        assert lite.keep_alive() is False  # alive: nothing to do

        os.killpg(lite.process.pid, signal.SIGKILL)
        lite.process.wait(10)
        with pytest.raises(VectorStoreUnavailable) as away:
            store.search(collection, 1, vectors[:1], 2)
        assert (away.value.code, away.value.status) == ("ServiceUnavailable", 503)

        assert lite.keep_alive() is True
        assert lite.uri == uri and running_server(Settings(data_dir=tmp_path)) == uri
        hits = _eventually(lambda: store.search(collection, 1, vectors[:1], 2))  # the same store, reconnected
        assert hits[0][0] == (10, pytest.approx(1.0))
        assert store.count(1) == 4
    finally:
        lite.stop()
