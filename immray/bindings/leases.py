"""Who scans which binding: a lease on the binding row, like task leases (``services.task_leases``).

A runner takes a free binding (no lease, or an expired one: its runner died) with one conditional UPDATE,
renews its leases while it runs, and releases them when it stops. Two runners racing for a row both send
the UPDATE; the database lets exactly one of them match it, so a binding is scanned by one runner at a time
across every server of a scale-out deployment.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import timedelta

from sqlalchemy import or_, select, update

from immray.services.database import Database
from immray.store import Binding, utcnow


def claim_free(db: Database, *, owner: str, lease_seconds: float, limit: int = 100) -> list[int]:
    """Take up to ``limit`` bindings no live runner holds; returns their ids."""
    now = utcnow()
    free = or_(Binding.lease_owner.is_(None), Binding.lease_expires_at < now)
    with db.read() as session:
        candidates = session.scalars(select(Binding.id).where(free).order_by(Binding.id).limit(limit)).all()
    taken = []
    for binding_id in candidates:
        with db.write() as session:
            row = session.execute(
                update(Binding)
                .where(Binding.id == binding_id, free)
                .values(
                    lease_owner=owner,
                    lease_expires_at=now + timedelta(seconds=lease_seconds),
                    updated_at=Binding.updated_at,  # UpdateTime tells of the binding, not its runner
                )
                .returning(Binding.id)
            ).first()
        if row is not None:
            taken.append(binding_id)
    return taken


def renew(db: Database, binding_ids: Collection[int], *, owner: str, lease_seconds: float) -> set[int]:
    """Extend this runner's leases; returns the ids it still holds (a deleted binding is not among them)."""
    if not binding_ids:
        return set()
    with db.write() as session:
        rows = session.execute(
            update(Binding)
            .where(Binding.id.in_(list(binding_ids)), Binding.lease_owner == owner)
            .values(
                lease_expires_at=utcnow() + timedelta(seconds=lease_seconds), updated_at=Binding.updated_at
            )
            .returning(Binding.id)
        ).all()
    return {row[0] for row in rows}


def release(db: Database, binding_ids: Collection[int], *, owner: str) -> None:
    """Let go at shutdown, so another runner takes the bindings over at once."""
    if not binding_ids:
        return
    with db.write() as session:
        session.execute(
            update(Binding)
            .where(Binding.id.in_(list(binding_ids)), Binding.lease_owner == owner)
            .values(lease_owner=None, lease_expires_at=None, updated_at=Binding.updated_at)
        )
