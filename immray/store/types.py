"""Column types that behave the same on SQLite and PostgreSQL.

SQLite has no timestamp-with-time-zone and no JSONB; these types hide the difference so that the rest of
immray only ever sees timezone-aware UTC datetimes, plain JSON values and 64-bit integer keys.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
from sqlalchemy import JSON, BigInteger, DateTime, Dialect, Integer, String
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.types import TypeDecorator

#: JSON everywhere; JSONB on PostgreSQL so tags and labels can be indexed and matched with ``@>``.
JSONType = JSON().with_variant(JSONB(), "postgresql")

#: 64-bit surrogate keys on PostgreSQL; SQLite only auto-increments an ``INTEGER PRIMARY KEY``.
BigIntKey = BigInteger().with_variant(Integer(), "sqlite")


def code_point_string(length: int) -> String:
    """A string compared by code point on both backends, so prefix ranges (filters.starts_with) are exact.

    SQLite compares that way already (BINARY); PostgreSQL's default collation may be linguistic.
    """
    return String(length).with_variant(String(length, collation="C"), "postgresql")


#: Embeddings are stored little-endian float32 whatever the machine, so any worker can read any row.
EMBEDDING_DTYPE = np.dtype("<f4")


def utcnow() -> datetime:
    """Now, as an aware UTC datetime (the only kind the store accepts)."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """An aware UTC datetime in, an aware UTC datetime out, on every backend.

    PostgreSQL stores ``timestamptz``; SQLite stores the UTC wall time as text and gets its tzinfo back on
    read. Naive datetimes are refused: guessing their zone is how timestamps silently shift by hours.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"expected a datetime, got {type(value).__name__}")
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value.isoformat()} refused: give it a time zone (UTC)")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def embedding_to_bytes(vector: Any) -> bytes:
    """A 1-d vector as little-endian float32 bytes (the stored form of a face embedding)."""
    array = np.asarray(vector, dtype=EMBEDDING_DTYPE)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"an embedding must be a non-empty 1-d vector, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError("an embedding must not contain NaN or infinity")
    return array.tobytes()


def embedding_from_bytes(data: bytes, dim: int) -> np.ndarray:
    """The float32 vector stored by :func:`embedding_to_bytes`, checked against its recorded dimension."""
    if len(data) != dim * EMBEDDING_DTYPE.itemsize:
        raise ValueError(f"embedding has {len(data)} bytes, expected {dim} float32 values")
    return np.frombuffer(data, dtype=EMBEDDING_DTYPE).astype(np.float32)
