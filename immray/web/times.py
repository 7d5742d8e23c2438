"""Times as people read them: "today 14:03", "3 Dec 09:12", "2025 3 Dec 09:12", and task durations.

The pages render these in UTC (the server does not know the reader's zone) inside ``<time datetime=...>``;
``static/app.js`` rewrites them in the browser's zone and puts the exact value in the hover title. Either
way no raw RFC 3339 text is shown.
"""

from __future__ import annotations

from datetime import UTC, datetime

from immray.protocol.errors import ImmError
from immray.protocol.times import parse_time


def moment(text: str | None) -> datetime | None:
    """An IMM time (RFC 3339) as an aware datetime; None for none or an unreadable one."""
    if not text:
        return None
    try:
        return parse_time(text, "time")
    except ImmError:
        return None


def readable(text: str | None, now: datetime | None = None) -> str:
    """``text`` (RFC 3339) as "today 14:03" / "3 Dec 09:12" / "3 Dec 2025 09:12", in UTC; "" for none."""
    when = moment(text)
    if when is None:
        return text or ""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    clock = when.strftime("%H:%M")
    if when.date() == now.date():
        return f"today {clock} UTC"
    day = f"{when.day} {when.strftime('%b')}"
    if when.year != now.year:
        day += f" {when.year}"
    return f"{day} {clock} UTC"


def exact(text: str | None) -> str:
    """The exact value for a hover title: "2026-12-05 03:05:37.123456 UTC"."""
    when = moment(text)
    return when.strftime("%Y-%m-%d %H:%M:%S.%f UTC") if when is not None else (text or "")


def duration(start: str | None, end: str | None, now: datetime | None = None) -> str:
    """How long a task took (or has run, while ``end`` is empty): "0.4 s", "12 s", "3 min 4 s", "2 h 5 min"."""
    began = moment(start)
    if began is None:
        return ""
    ended = moment(end) or (now or datetime.now(UTC))
    return span((ended - began).total_seconds())


def span(seconds: float) -> str:
    seconds = max(seconds, 0.0)
    if seconds < 10:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min {whole % 60} s"
    return f"{whole // 3600} h {whole % 3600 // 60} min"
