"""pymilvus, imported so that it leaves the process's logging alone.

pymilvus configures its own loggers with ``logging.config.dictConfig`` when it is imported, and dictConfig
first closes every handler the process already has. In a Ray Serve replica that is Serve's buffered handler
of the replica's log file: closed, it drops every later line, so the dashboard's Serve view of the ingress
went silent after its first vector write. The import below keeps the existing handlers open (pymilvus still
gets its own loggers); every module of immray imports pymilvus through ``milvus_client_class``.
"""

from __future__ import annotations

import logging.config
import threading

_lock = threading.Lock()


def import_pymilvus():
    """The pymilvus module, its first import made without closing the process's log handlers."""
    with _lock:
        clear = logging.config._clearExistingHandlers  # type: ignore[attr-defined]
        logging.config._clearExistingHandlers = lambda: None  # type: ignore[attr-defined]
        try:
            import pymilvus
        finally:
            logging.config._clearExistingHandlers = clear  # type: ignore[attr-defined]
    return pymilvus
