"""Pages of a listing that a filter thins out (what a key may see, tags), with exact NextTokens.

``store.keyset_page`` pages a query; when some rows must be dropped after the query (a policy decides, not
SQL), a page is filled from as many keyset batches as it takes, and its NextToken points just after the
last row shown, so nothing is skipped or shown twice. The token is only given when another shown row
follows, so the last page never comes with a token that leads to an empty page.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import Select
from sqlalchemy.orm import Session

from immray.protocol.errors import ImmError
from immray.store import InvalidPageToken, SortKey, keyset_page
from immray.store.paging import encode_page_token

T = TypeVar("T")
BATCH = 200


@dataclass(frozen=True)
class Listing(Generic[T]):
    items: list[T]
    next_token: str  # "" on the last page


def list_page(
    session: Session,
    stmt: Select[tuple[Any]],
    key: SortKey,
    *,
    limit: int,
    token: str = "",
    keep: Callable[[Any], bool] | None = None,
) -> Listing[Any]:
    """Up to ``limit`` rows of ``stmt`` in ``key`` order after ``token``, only those ``keep`` accepts."""
    try:
        if keep is None:
            page = keyset_page(session, stmt, key, limit=limit, token=token)
            return Listing(page.items, page.next_token)
        return _filtered(session, stmt, key, limit, token, keep)
    except InvalidPageToken as exc:
        raise ImmError.invalid_argument(f"The parameter NextToken is invalid: {exc}.") from None


def _filtered(
    session: Session,
    stmt: Select[tuple[Any]],
    key: SortKey,
    limit: int,
    token: str,
    keep: Callable[[Any], bool],
) -> Listing[Any]:
    shown: list[Any] = []
    while True:
        page = keyset_page(session, stmt, key, limit=BATCH, token=token)
        for row in page.items:
            if not keep(row):
                continue
            if len(shown) == limit:  # one more row to show: the page ends before it
                last = shown[-1]
                return Listing(
                    shown, encode_page_token(key, _value(last, key.column), _value(last, key.tiebreak))
                )
            shown.append(row)
        if not page.next_token:
            return Listing(shown, "")
        token = page.next_token


def _value(row: Any, column: Any) -> Any:
    """The sort value of an entity row; listings sort by mapped attributes (``Project.name``)."""
    return getattr(row, column.key)
