"""Signature nonces: replay protection that holds across every process sharing the database.

``DatabaseNonceStore`` is the database-backed ``immray.protocol.nonces.NonceStore``: one row per nonce,
kept until the request that carried it would be refused as expired anyway.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlalchemy import delete
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, sessionmaker

from immray.store.models import SignatureNonce
from immray.store.types import utcnow

PRUNE_EVERY = 256  # calls between two deletions of expired nonces, per store


def remember_nonce(session: Session, nonce: str, expires_at: datetime, now: datetime) -> bool:
    """Record ``nonce`` until ``expires_at``; False when it is already recorded and not expired (a replay).

    The unique key decides, so of two processes racing with the same nonce exactly one wins: on
    PostgreSQL the second insert waits for the first transaction and then finds the row. An expired row
    is taken over in place.
    """
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    stmt = insert(SignatureNonce).values(nonce=nonce, expires_at=expires_at)
    stmt = stmt.on_conflict_do_update(
        index_elements=[SignatureNonce.nonce],
        set_={"expires_at": stmt.excluded.expires_at},
        where=SignatureNonce.expires_at <= now,
    )
    # RETURNING rather than rowcount: the row comes back only when it was inserted or taken over.
    return session.execute(stmt.returning(SignatureNonce.id)).first() is not None


def prune_nonces(session: Session, now: datetime) -> int:
    """Forget the nonces that have expired; returns how many."""
    return session.execute(delete(SignatureNonce).where(SignatureNonce.expires_at <= now)).rowcount


class DatabaseNonceStore:
    """``NonceStore`` over the database, each call its own short transaction.

    ``clock`` is the time expiry is judged by; give the verifier's clock when that one is not the real time.
    """

    def __init__(self, sessions: sessionmaker[Session], clock: Callable[[], datetime] | None = None) -> None:
        self._sessions = sessions
        self._clock = clock or utcnow
        self._calls = 0

    def seen_before(self, nonce: str, expires_at: datetime) -> bool:
        now = self._clock()
        self._calls += 1
        with self._sessions.begin() as session:
            if self._calls % PRUNE_EVERY == 0:
                prune_nonces(session, now)
            return not remember_nonce(session, nonce, expires_at, now)
