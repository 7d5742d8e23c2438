"""The outbox table's operations: write a message, claim due ones, record the outcome, purge old rows.

Claiming is one UPDATE that moves the claimed rows' ``next_attempt_at`` past a visibility timeout and
counts the attempt, so several dispatchers (threads or processes) never send the same row at once, and a
dispatcher that dies mid-delivery only delays its rows by that timeout. The rows are picked with ``FOR
UPDATE SKIP LOCKED`` on PostgreSQL (concurrent dispatchers take different rows instead of waiting);
SQLite has no row locks, and its ``BEGIN IMMEDIATE`` transaction makes the UPDATE atomic by itself.
"""

from __future__ import annotations

import random
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import Session

from immray.store import OutboxMessage, utcnow

MAX_ERROR_CHARS = 2000


@dataclass(frozen=True)
class ClaimedMessage:
    id: int
    message_id: str
    topic: str
    payload: dict[str, Any]
    attempts: int  # including the one being made


def enqueue(
    session: Session, *, topic: str, message: Mapping[str, str], task_id: str | None = None
) -> OutboxMessage:
    """Add ``message`` (an envelope) for ``topic`` to the caller's transaction: it is sent once that
    transaction commits, and never if it rolls back."""
    row = OutboxMessage(message_id=message["id"], topic=topic, payload=dict(message), task_id=task_id)
    session.add(row)
    session.flush()
    return row


def claim_due(
    session: Session, *, limit: int, max_attempts: int, visibility_seconds: float, now: datetime | None = None
) -> list[ClaimedMessage]:
    """Up to ``limit`` undelivered messages that are due, claimed for ``visibility_seconds``."""
    now = now or utcnow()
    due = (
        select(OutboxMessage.id)
        .where(
            OutboxMessage.delivered_at.is_(None),
            OutboxMessage.next_attempt_at <= now,
            OutboxMessage.attempts < max_attempts,
        )
        .order_by(OutboxMessage.next_attempt_at, OutboxMessage.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    ids = list(session.scalars(due))
    if not ids:
        return []
    claimed = session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id.in_(ids), OutboxMessage.delivered_at.is_(None))
        .values(
            attempts=OutboxMessage.attempts + 1,
            next_attempt_at=now + timedelta(seconds=visibility_seconds),
        )
        .returning(
            OutboxMessage.id,
            OutboxMessage.message_id,
            OutboxMessage.topic,
            OutboxMessage.payload,
            OutboxMessage.attempts,
        )
    ).all()
    return sorted((ClaimedMessage(*row) for row in claimed), key=lambda message: message.id)


def mark_delivered(session: Session, message_ids: Collection[int], now: datetime | None = None) -> None:
    """The sinks took these; ``last_error`` keeps what went wrong before, if anything did."""
    if message_ids:
        session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id.in_(list(message_ids)))
            .values(delivered_at=now or utcnow())
        )


def release(session: Session, message_ids: Collection[int], now: datetime | None = None) -> None:
    """Hand claimed messages back untried: due at once, and the claim's attempt not counted."""
    if message_ids:
        session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id.in_(list(message_ids)), OutboxMessage.delivered_at.is_(None))
            .values(attempts=OutboxMessage.attempts - 1, next_attempt_at=now or utcnow())
        )


def mark_failed(session: Session, message_id: int, error: str, retry_at: datetime) -> None:
    """Record a failed attempt; the message is tried again at ``retry_at`` (if attempts remain)."""
    session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id == message_id, OutboxMessage.delivered_at.is_(None))
        .values(last_error=error[:MAX_ERROR_CHARS], next_attempt_at=retry_at)
    )


def retry_delay(attempts: int, *, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Exponential backoff after the ``attempts``-th failure: base, 2*base, 4*base, ... up to ``cap``,
    less up to 20 % jitter so messages that failed together do not all retry together."""
    delay = min(cap, base * 2 ** min(max(attempts - 1, 0), 62))
    return delay * (1 - 0.2 * (rng or random).random())


def purge_outbox(session: Session, *, before: datetime, max_attempts: int) -> int:
    """Delete messages delivered before ``before``, and those given up on that were written before it."""
    result = session.execute(
        delete(OutboxMessage).where(
            or_(
                OutboxMessage.delivered_at < before,
                (OutboxMessage.delivered_at.is_(None))
                & (OutboxMessage.attempts >= max_attempts)
                & (OutboxMessage.created_at < before),
            )
        )
    )
    return result.rowcount or 0
