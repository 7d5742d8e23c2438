"""Face vectors in Milvus: the store (``store``), where a process finds Milvus (``endpoint``), the engine's
index on it (``index``), the writes the services make after their SQL commits and the drift check
(``sync``). See ``store`` for the collection layout, index, metric and consistency decisions."""

from immray.vectors.registry import attach, for_db, open_store

__all__ = ["attach", "for_db", "open_store"]
