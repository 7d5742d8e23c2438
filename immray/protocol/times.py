"""Times on IMM's wire: RFC 3339 in UTC (CreateTime, UpdateTime, StartTime, TimeRange bounds).

IMM writes RFC3339Nano (``2022-01-14T10:10:52.83948013+08:00``); immray answers in UTC with microseconds
(``2022-01-14T02:10:52.839480Z``), which every RFC 3339 reader takes, and reads any offset a client sends.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from immray.protocol.errors import ImmError

_RFC3339 = re.compile(
    r"(?P<date>\d{4}-\d{2}-\d{2})[Tt ](?P<time>\d{2}:\d{2}:\d{2})(?:\.(?P<fraction>\d{1,9}))?"
    r"(?P<zone>[Zz]|[+-]\d{2}:\d{2})"
)


def format_time(moment: datetime) -> str:
    """``moment`` (aware) as RFC 3339 in UTC with microseconds and a ``Z``."""
    if moment.tzinfo is None:
        raise ValueError("format_time needs an aware datetime")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str, name: str) -> datetime:
    """An RFC 3339 time given by a client (nanoseconds cut to microseconds); ``name`` is the parameter."""
    match = _RFC3339.fullmatch(text.strip())
    if match is None:
        raise ImmError.invalid_argument(
            f"The parameter {name} must be an RFC 3339 time such as 2024-01-31T08:00:00Z, not {text[:64]!r}."
        )
    fraction = (match["fraction"] or "0")[:6].ljust(6, "0")
    zone = "+00:00" if match["zone"] in ("Z", "z") else match["zone"]
    try:
        return datetime.fromisoformat(f"{match['date']}T{match['time']}.{fraction}{zone}").astimezone(UTC)
    except ValueError:
        raise ImmError.invalid_argument(
            f"The parameter {name} holds an impossible time {text[:64]!r}."
        ) from None
