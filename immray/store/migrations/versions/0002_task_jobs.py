"""Tasks know the job that runs them, and tasks sharing a serial key run one at a time.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26

``job_name``/``job_payload`` let any worker run a task again after a restart; ``serial_key`` with the
partial unique index ``uq_tasks_serial_key_leased`` is the database's guard that at most one task per key
(one clustering task per dataset) holds a lease. ``end_time`` gets an index for the retention purge.
Kept self-contained (no imports from immray) so later model changes cannot rewrite history.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
LEASED = sa.text("lease_owner IS NOT NULL")


def upgrade() -> None:
    with op.batch_alter_table("tasks") as batch_op:
        batch_op.add_column(sa.Column("job_name", sa.String(length=128), nullable=True))
        batch_op.add_column(sa.Column("job_payload", JSON, nullable=True))
        batch_op.add_column(sa.Column("serial_key", sa.String(length=256), nullable=True))
    op.create_index(op.f("ix_tasks_serial_key_status"), "tasks", ["serial_key", "status"])
    op.create_index(op.f("ix_tasks_end_time"), "tasks", ["end_time"])
    op.create_index(
        "uq_tasks_serial_key_leased",
        "tasks",
        ["serial_key"],
        unique=True,
        sqlite_where=LEASED,
        postgresql_where=LEASED,
    )


def downgrade() -> None:
    op.drop_index("uq_tasks_serial_key_leased", table_name="tasks")
    op.drop_index(op.f("ix_tasks_end_time"), table_name="tasks")
    op.drop_index(op.f("ix_tasks_serial_key_status"), table_name="tasks")
    with op.batch_alter_table("tasks") as batch_op:
        batch_op.drop_column("serial_key")
        batch_op.drop_column("job_payload")
        batch_op.drop_column("job_name")
