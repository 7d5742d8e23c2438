"""Bindings get a lease, so exactly one runner (of any server) scans a binding at a time.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25

A runner claims a binding by writing its name and a lease expiry into the row with one conditional UPDATE
(like task leases), renews it while it watches the location, and a binding whose lease expired (its runner
died) is taken over by another. Kept self-contained (no imports from immray).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("bindings") as batch_op:
        batch_op.add_column(sa.Column("lease_owner", sa.String(length=256), nullable=True))
        batch_op.add_column(sa.Column("lease_expires_at", TIMESTAMP, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("bindings") as batch_op:
        batch_op.drop_column("lease_expires_at")
        batch_op.drop_column("lease_owner")
