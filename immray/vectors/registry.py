"""Which vector store a database's services write to: a process attaches its settings to its database
handle once (the ingress, a dataset actor, a job context, the CLI), and the services, which only get the
``Database``, look the store up by it. A database no process attached has no store: its services skip
the Milvus writes, which the next clustering task repairs (``MilvusIndex.add`` upserts what is missing)."""

from __future__ import annotations

import threading

from immray.settings import Settings
from immray.vectors import endpoint
from immray.vectors.resilient import ReconnectingClient
from immray.vectors.store import FaceVectors

_lock = threading.Lock()
_settings: dict[str, Settings] = {}
_stores: dict[tuple[str, str], FaceVectors] = {}


def _key(db) -> str:
    return db.engine.url.render_as_string(hide_password=False)


def attach(db, settings: Settings) -> None:
    """Make ``settings`` say where ``db``'s face vectors live, in this process."""
    with _lock:
        _settings[_key(db)] = settings


def for_db(db) -> FaceVectors | None:
    """The vector store of ``db`` (None when no settings were attached to it in this process)."""
    with _lock:
        settings = _settings.get(_key(db))
    return None if settings is None else open_store(settings)


def open_store(settings: Settings) -> FaceVectors:
    """The ``FaceVectors`` of ``settings`` in this process (one per Milvus and prefix)."""
    where = endpoint.target(settings)
    key = (where, settings.milvus_collection_prefix)
    with _lock:
        store = _stores.get(key)
    if store is None:
        backend = endpoint.backend(where)
        if backend == "server":  # a server may be away at first, or go away and come back (``resilient``)
            client = ReconnectingClient(lambda fresh: endpoint.client(settings, fresh=fresh))
        else:
            client = endpoint.client(settings)
        store = FaceVectors(
            client,
            prefix=settings.milvus_collection_prefix,
            backend=backend,
            session_reads=settings.milvus_session_reads,
        )
        with _lock:
            store = _stores.setdefault(key, store)
    return store


def forget(settings: Settings) -> None:
    """Drop this process's stores of ``settings``' lite file (before a server takes the file over)."""
    path = str(endpoint.lite_dir(settings))
    with _lock:
        for key in [k for k in _stores if k[0] == path]:
            del _stores[key]
