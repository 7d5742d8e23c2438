"""Access keys: create (the secret is shown once), list (never a secret), revoke, and look up for requests.

A revoked key stays in the table (who had access, until when) but no longer authenticates: the verifier
finds no secret for it, so its requests fail with InvalidAccessKeyId.NotFound, exactly like a key that
never existed; nothing tells a caller holding a revoked key more than that.
"""

from __future__ import annotations

import secrets
import string
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from immray.policy import ADMIN_POLICY, Policy, parse_policy
from immray.protocol.errors import ImmError
from immray.services.database import Database
from immray.store import AccessKey, utcnow

_ALPHABET = string.ascii_letters + string.digits
KEY_ID_PREFIX = "IR"  # immray
KEY_ID_LENGTH = 24  # like Alibaba Cloud's LTAI... ids
SECRET_LENGTH = 40
# Serialises the first-start check on PostgreSQL, where two servers could start at once.
_PG_ADMIN_KEY_LOCK = 0x6B657973  # "keys"


@dataclass(frozen=True)
class KeyInfo:
    """What may be shown about a key: everything but its secret."""

    access_key_id: str
    description: str | None
    policy: dict[str, Any]
    is_admin: bool
    created_at: datetime
    revoked_at: datetime | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


@dataclass(frozen=True)
class NewKey:
    """A key just created: the only moment its secret is handed out."""

    info: KeyInfo
    secret: str

    def __repr__(self) -> str:  # never in a log or a traceback by accident
        return f"NewKey({self.info.access_key_id}, secret=***)"


def _info(row: AccessKey) -> KeyInfo:
    return KeyInfo(
        row.access_key_id, row.description, row.policy, row.is_admin, row.created_at, row.revoked_at
    )


def new_key_id() -> str:
    return KEY_ID_PREFIX + "".join(
        secrets.choice(_ALPHABET) for _ in range(KEY_ID_LENGTH - len(KEY_ID_PREFIX))
    )


def new_secret() -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(SECRET_LENGTH))


def create_key(
    db: Database, policy: Policy | dict[str, Any], *, description: str | None = None, is_admin: bool = False
) -> NewKey:
    """A new key with ``policy`` (checked here, so a bad document never reaches the table)."""
    checked = policy if isinstance(policy, Policy) else parse_policy(policy)
    if description is not None and len(description) > 256:
        raise ImmError.invalid_argument("A key description may be at most 256 characters long.")
    with db.write() as session:
        return _add_key(session, checked, description, is_admin)


def _add_key(session: Session, policy: Policy, description: str | None, is_admin: bool) -> NewKey:
    secret = new_secret()
    row = AccessKey(
        access_key_id=new_key_id(),
        secret=secret,
        description=description,
        policy=policy.document,
        is_admin=is_admin,
    )
    session.add(row)
    session.flush()
    return NewKey(_info(row), secret)


def ensure_admin_key(db: Database) -> NewKey | None:
    """The admin key of the first start; None when one was ever made (revoked or not: a revoked admin key
    stays revoked, and a lost secret is replaced with ``immray keys create --admin``)."""
    with db.write() as session:
        if session.get_bind().dialect.name == "postgresql":
            session.execute(text(f"SELECT pg_advisory_xact_lock({_PG_ADMIN_KEY_LOCK})"))
        exists = session.scalar(select(AccessKey.id).where(AccessKey.is_admin.is_(True)).limit(1))
        if exists is not None:
            return None
        return _add_key(session, parse_policy(ADMIN_POLICY), "admin key created on first start", True)


def list_keys(db: Database, *, include_revoked: bool = True) -> list[KeyInfo]:
    with db.read() as session:
        stmt = select(AccessKey).order_by(AccessKey.created_at, AccessKey.id)
        if not include_revoked:
            stmt = stmt.where(AccessKey.revoked_at.is_(None))
        return [_info(row) for row in session.scalars(stmt)]


def get_key(db: Database, access_key_id: str) -> KeyInfo:
    with db.read() as session:
        return _info(_find(session, access_key_id))


def revoke_key(db: Database, access_key_id: str) -> tuple[KeyInfo, bool]:
    """Revoke a key; returns it and whether this call revoked it (False: it was revoked already)."""
    with db.write() as session:
        row = _find(session, access_key_id)
        if row.revoked_at is not None:
            return _info(row), False
        row.revoked_at = utcnow()
        session.flush()
        return _info(row), True


def _find(session: Session, access_key_id: str) -> AccessKey:
    row = session.scalar(select(AccessKey).where(AccessKey.access_key_id == access_key_id))
    if row is None:
        raise ImmError.resource_not_found("access key", access_key_id)
    return row


# --- what every request needs ---------------------------------------------------------------------


def secret_of(db: Database, access_key_id: str) -> str | None:
    """The secret that signs ``access_key_id``'s requests; None for unknown and revoked keys."""
    with db.read() as session:
        return session.scalar(
            select(AccessKey.secret).where(
                AccessKey.access_key_id == access_key_id, AccessKey.revoked_at.is_(None)
            )
        )


def policy_of(db: Database, access_key_id: str) -> Policy | None:
    """The policy of an active key; None for unknown and revoked keys (then nothing is allowed)."""
    with db.read() as session:
        document = session.scalar(
            select(AccessKey.policy).where(
                AccessKey.access_key_id == access_key_id, AccessKey.revoked_at.is_(None)
            )
        )
    # Stored documents were checked on the way in; parsing again is cheap and keeps one code path.
    return None if document is None else parse_policy(document)
