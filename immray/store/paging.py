"""Keyset paging: stable pages and opaque NextTokens for every IMM list operation.

A page continues strictly after the last row of the previous one in (sort value, unique tiebreak) order,
so rows inserted or deleted between calls never make a page skip or repeat a row, and page N costs the
same as page 1 (an index on (scope, sort, tiebreak) answers it). The token carries the sort key's name:
a token is refused for another sort, rather than silently meaning something else.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from sqlalchemy import ColumnElement, Select, literal, tuple_
from sqlalchemy.orm import Session

T = TypeVar("T")


class InvalidPageToken(ValueError):
    """A NextToken that this query did not produce (the API answers InvalidArgument)."""


@dataclass(frozen=True)
class SortKey:
    """How a list is ordered: ``column``, then the unique ``tiebreak``, both ascending or descending."""

    name: str  # e.g. "FaceCount"; recorded in the token
    column: ColumnElement[Any]
    tiebreak: ColumnElement[Any]
    descending: bool = False


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    next_token: str  # "" on the last page


def keyset_page(
    session: Session, stmt: Select[tuple[T]], key: SortKey, *, limit: int, token: str = ""
) -> Page[T]:
    """One page of ``stmt`` (a select of one entity, filtered but neither ordered nor limited)."""
    if limit < 1:
        raise ValueError(f"a page holds at least one row, got limit={limit}")
    stmt = stmt.add_columns(key.column, key.tiebreak)
    if token:
        value, tie = decode_page_token(token, key)
        here = tuple_(key.column, key.tiebreak)
        after = tuple_(literal(value, key.column.type), literal(tie, key.tiebreak.type))
        stmt = stmt.where(here < after if key.descending else here > after)
    if key.descending:
        stmt = stmt.order_by(key.column.desc(), key.tiebreak.desc())
    else:
        stmt = stmt.order_by(key.column.asc(), key.tiebreak.asc())
    rows = session.execute(stmt.limit(limit + 1)).all()
    if len(rows) <= limit:
        return Page(items=[row[0] for row in rows], next_token="")
    rows = rows[:limit]
    last = rows[-1]
    return Page(items=[row[0] for row in rows], next_token=encode_page_token(key, last[1], last[2]))


def encode_page_token(key: SortKey, value: Any, tie: Any) -> str:
    body = json.dumps({"s": key.name, "k": [_encode(value), _encode(tie)]}, separators=(",", ":"))
    return base64.urlsafe_b64encode(body.encode()).decode().rstrip("=")


def decode_page_token(token: str, key: SortKey) -> tuple[Any, Any]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        body = json.loads(raw)
        name, (value, tie) = body["s"], body["k"]
        value, tie = _decode(value), _decode(tie)
    except (binascii.Error, UnicodeDecodeError, ValueError, TypeError, KeyError) as exc:
        raise InvalidPageToken(f"NextToken {token[:80]!r} is malformed") from exc
    if name != key.name:
        raise InvalidPageToken(
            f"NextToken {token[:80]!r} belongs to a listing sorted by {name}, not {key.name}"
        )
    _check_type(token, value, key.column)
    _check_type(token, tie, key.tiebreak)
    return value, tie


def _encode(value: Any) -> Any:
    if isinstance(value, datetime):
        return {"t": value.isoformat()}
    if value is None or isinstance(value, str | int | float):
        return value
    raise TypeError(f"cannot page by a value of type {type(value).__name__}")


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        return datetime.fromisoformat(value["t"])
    if value is None or isinstance(value, str | int | float):
        return value
    raise TypeError(f"unexpected value in token: {value!r}")


def _check_type(token: str, value: Any, column: ColumnElement[Any]) -> None:
    try:
        expected = column.type.python_type
    except NotImplementedError:
        return
    if expected is float and isinstance(value, int):
        return
    if value is not None and (not isinstance(value, expected) or isinstance(value, bool)):
        raise InvalidPageToken(f"NextToken {token[:80]!r} does not fit this listing")
    if isinstance(value, datetime) and value.tzinfo is None:
        raise InvalidPageToken(f"NextToken {token[:80]!r} holds a time without zone")
