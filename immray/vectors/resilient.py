"""A ``MilvusClient`` that outlives a Milvus restart.

Measured here (pymilvus 3.0.2, ``milvus-lite server``): once its server is gone, a client fails every call
at once with ``MilvusException(code=2, "Fail connecting to server ...")`` and keeps failing after the server
is back on the same address (40 s of retries, never recovered); a new client works at once. And a restarted
milvus-lite server holds its collections *released*: every search, get and query fails with code 101 until
the collection is loaded again.

So every call goes through :class:`ReconnectingClient`: a connection failure drops the client (the next
call makes a new one) and raises :class:`VectorStoreUnavailable`, an IMM error the callers either answer
with, wait out (the clustering task) or log (writes the next task repairs); a released collection is loaded
and the call made once more.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from typing import Any

from immray.protocol.errors import ImmError

log = logging.getLogger("immray.vectors")

_CONNECT_FAILED = 2  # pymilvus's Status.CONNECT_FAILED
_NOT_LOADED = 101  # Milvus's and milvus-lite's "collection not loaded"
_UNAVAILABLE_WORDS = ("Fail connecting", "server unavailable", "StatusCode.UNAVAILABLE", "failed to connect")


class VectorStoreUnavailable(ImmError):
    """Milvus cannot be reached now; what needs it waits for it or answers this."""

    def __init__(self, detail: str = "") -> None:
        super().__init__(
            "ServiceUnavailable",
            "The face vector store (Milvus) cannot be reached now; retry later.",
            503,
        )
        self.detail = detail

    def __reduce__(self):  # crosses Ray's process boundaries with its detail
        return (type(self), (self.detail,))


def is_connection_error(exc: BaseException) -> bool:
    """Whether ``exc`` says Milvus could not be reached (not that the call was wrong)."""
    try:
        import grpc
    except ImportError:  # pragma: no cover - pymilvus depends on grpcio
        grpc = None
    if grpc is not None and isinstance(exc, grpc.RpcError):
        code = exc.code() if callable(getattr(exc, "code", None)) else None
        return code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
    if getattr(exc, "code", None) == _CONNECT_FAILED:
        return True
    text = str(exc)
    return any(word in text for word in _UNAVAILABLE_WORDS)


def _not_loaded(exc: BaseException) -> bool:
    return getattr(exc, "code", None) == _NOT_LOADED or "call load()" in str(exc)


class ReconnectingClient:
    """Calls a ``MilvusClient`` made by ``connect(fresh)`` when first needed (``fresh``: not the process's
    shared one, which failed); see the module's docstring."""

    def __init__(self, connect: Callable[[bool], Any]) -> None:
        self._connect = connect
        self._client: Any = None
        self._failed = False
        self._lock = threading.Lock()

    def _current(self) -> Any:
        with self._lock:
            if self._client is None:
                try:
                    self._client = self._connect(self._failed)
                except Exception as exc:
                    if is_connection_error(exc):
                        raise VectorStoreUnavailable(str(exc)) from None
                    raise
            return self._client

    def _drop(self, client: Any) -> None:
        with self._lock:
            if self._client is client:
                self._client = None
                self._failed = True
        with contextlib.suppress(Exception):  # a client whose server is gone may fail to close
            client.close()

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)

        def call(*args: Any, **kwargs: Any) -> Any:
            client = self._current()
            try:
                try:
                    return getattr(client, name)(*args, **kwargs)
                except Exception as exc:
                    collection = (
                        args[0] if args and isinstance(args[0], str) else kwargs.get("collection_name")
                    )
                    if not (_not_loaded(exc) and collection and name != "load_collection"):
                        raise
                    log.info("Milvus holds %s released (restarted?): loading it again", collection)
                    client.load_collection(collection)
                    return getattr(client, name)(*args, **kwargs)
            except Exception as exc:
                if not is_connection_error(exc):
                    raise
                self._drop(client)
                log.warning("Milvus cannot be reached (%s): %s", name, str(exc)[:200])
                raise VectorStoreUnavailable(str(exc)) from None

        return call
