"""Files get an analysis lease, so one analysis at a time works on a Pending file.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-05

An analysis claims a Pending file by writing a lease expiry into the row (under the row's lock); another
analysis of the same file, submitted again by a second ingress replica at its start or by a later sweep,
finds the lease held and does nothing, and does not count an attempt. A lease that expired (its analysis
died with its process) is taken over by the next sweep. Kept self-contained (no imports from immray).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("files") as batch_op:
        batch_op.add_column(sa.Column("analysis_lease_expires_at", TIMESTAMP, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("files") as batch_op:
        batch_op.drop_column("analysis_lease_expires_at")
