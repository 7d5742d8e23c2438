"""Signature nonces: replay protection that holds across every process sharing the database."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from facegroup.store.models import SignatureNonce


def remember_nonce(session: Session, access_key_id: str, nonce: str, expires_at: datetime) -> bool:
    """Record that ``access_key_id`` used ``nonce``; False when it had been used already (a replay).

    The unique key decides, so two processes racing with the same nonce cannot both win: on PostgreSQL
    the second insert waits for the first transaction and then finds the row.
    """
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    stmt = (
        insert(SignatureNonce)
        .values(access_key_id=access_key_id, nonce=nonce, expires_at=expires_at)
        .on_conflict_do_nothing(index_elements=["access_key_id", "nonce"])
    )
    return session.execute(stmt).rowcount == 1


def prune_nonces(session: Session, now: datetime) -> int:
    """Forget nonces whose requests would be refused as expired anyway; returns how many."""
    result = session.execute(delete(SignatureNonce).where(SignatureNonce.expires_at < now))
    return result.rowcount
