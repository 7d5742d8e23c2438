"""SQL conditions whose meaning must not depend on the backend or the server's collation."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, and_

_MAX_CODE_POINT = 0x10FFFF


def starts_with(column: ColumnElement[str], prefix: str) -> ColumnElement[bool]:
    """``column`` begins with ``prefix``, exactly and case-sensitively, as an index range scan.

    LIKE would need its wildcards escaped, is case-insensitive on SQLite and cannot use an index there.
    The range ``prefix <= column < successor(prefix)`` is exact where the column compares by code point:
    SQLite's BINARY collation, and the "C" collation immray gives such columns on PostgreSQL.
    """
    if not prefix:
        return column.is_not(None)
    upper = _successor(prefix)
    if upper is None:
        return column >= prefix
    return and_(column >= prefix, column < upper)


def _successor(prefix: str) -> str | None:
    """The smallest string greater than every string that starts with ``prefix`` (None: no such string)."""
    chars: list[Any] = list(prefix)
    while chars:
        code = ord(chars.pop()) + 1
        if 0xD800 <= code <= 0xDFFF:  # surrogates are not valid text on PostgreSQL
            code = 0xE000
        if code <= _MAX_CODE_POINT:
            return "".join(chars) + chr(code)
    return None
