"""Initial schema.

Projects, datasets, files, figures, figure clusters, tasks, bindings, access keys, signature nonces, the
notification outbox and the clustering engine's saved state.

Revision ID: 0001
Revises:
Create Date: 2026-11-25

Written for both backends: types that differ (JSON/JSONB, 64-bit keys that SQLite must see as INTEGER to
auto-increment, code-point ordered text) are spelled with variants, and the one foreign key that closes
a cycle is added last.
Kept self-contained (no imports from immray) so later model changes cannot rewrite history.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
BIGID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TIMESTAMP = sa.DateTime(timezone=True)


def code_point_string(length: int) -> sa.types.TypeEngine:
    """Compared by code point on PostgreSQL too (collation "C"), so prefix ranges are exact."""
    return sa.String(length).with_variant(sa.String(length, collation="C"), "postgresql")


def upgrade() -> None:
    op.create_table(
        "access_keys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("access_key_id", sa.String(length=64), nullable=False),
        sa.Column("secret", sa.String(length=128), nullable=False),
        sa.Column("description", sa.String(length=256), nullable=True),
        sa.Column("policy", JSON, nullable=False),
        sa.Column("is_admin", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("last_used_at", TIMESTAMP, nullable=True),
        sa.Column("revoked_at", TIMESTAMP, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_access_keys")),
        sa.UniqueConstraint("access_key_id", name=op.f("uq_access_keys_access_key_id")),
    )
    op.create_table(
        "outbox",
        sa.Column("id", BIGID, nullable=False),
        sa.Column("message_id", sa.String(length=64), nullable=False),
        sa.Column("topic", sa.String(length=256), nullable=False),
        sa.Column("payload", JSON, nullable=False),
        sa.Column("task_id", sa.String(length=128), nullable=True),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("next_attempt_at", TIMESTAMP, nullable=False),
        sa.Column("delivered_at", TIMESTAMP, nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox")),
        sa.UniqueConstraint("message_id", name=op.f("uq_outbox_message_id")),
    )
    op.create_index(
        op.f("ix_outbox_delivered_at_next_attempt_at"), "outbox", ["delivered_at", "next_attempt_at"]
    )
    op.create_index(op.f("ix_outbox_task_id"), "outbox", ["task_id"])

    op.create_table(
        "projects",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", code_point_string(128), nullable=False),
        sa.Column("description", sa.String(length=256), nullable=True),
        sa.Column("service_role", sa.String(length=256), nullable=True),
        sa.Column("template_id", sa.String(length=256), nullable=True),
        sa.Column("project_max_dataset_count", sa.BigInteger(), nullable=True),
        sa.Column("dataset_max_bind_count", sa.BigInteger(), nullable=True),
        sa.Column("dataset_max_file_count", sa.BigInteger(), nullable=True),
        sa.Column("dataset_max_entity_count", sa.BigInteger(), nullable=True),
        sa.Column("dataset_max_relation_count", sa.BigInteger(), nullable=True),
        sa.Column("dataset_max_total_file_size", sa.BigInteger(), nullable=True),
        sa.Column("engine_concurrency", sa.Integer(), nullable=True),
        sa.Column("project_queries_per_second", sa.Integer(), nullable=True),
        sa.Column("tags", JSON, nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_projects")),
        sa.UniqueConstraint("name", name=op.f("uq_projects_name")),
    )
    op.create_table(
        "signature_nonces",
        sa.Column("id", BIGID, nullable=False),
        sa.Column("nonce", sa.String(length=256), nullable=False),
        sa.Column("expires_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_signature_nonces")),
        sa.UniqueConstraint("nonce", name=op.f("uq_signature_nonces_nonce")),
    )
    op.create_index(op.f("ix_signature_nonces_expires_at"), "signature_nonces", ["expires_at"])

    op.create_table(
        "datasets",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("name", code_point_string(128), nullable=False),
        sa.Column("description", sa.String(length=256), nullable=True),
        sa.Column("template_id", sa.String(length=256), nullable=True),
        sa.Column("dataset_max_bind_count", sa.BigInteger(), nullable=True),
        sa.Column("dataset_max_file_count", sa.BigInteger(), nullable=True),
        sa.Column("dataset_max_entity_count", sa.BigInteger(), nullable=True),
        sa.Column("dataset_max_relation_count", sa.BigInteger(), nullable=True),
        sa.Column("dataset_max_total_file_size", sa.BigInteger(), nullable=True),
        sa.Column("workflow_parameters", JSON, nullable=True),
        sa.Column("change_seq", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name=op.f("fk_datasets_project_id_projects"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_datasets")),
        sa.UniqueConstraint("project_id", "name", name=op.f("uq_datasets_project_id_name")),
    )
    op.create_table(
        "bindings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("dataset_id", sa.Integer(), nullable=False),
        sa.Column("uri", sa.String(length=2048), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("phase", sa.String(length=32), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("cursor", JSON, nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.ForeignKeyConstraint(
            ["dataset_id"], ["datasets.id"], name=op.f("fk_bindings_dataset_id_datasets"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bindings")),
        sa.UniqueConstraint("dataset_id", "uri", name=op.f("uq_bindings_dataset_id_uri")),
    )
    op.create_table(
        "clustering_states",
        sa.Column("dataset_id", sa.Integer(), nullable=False),
        sa.Column("state", sa.LargeBinary(), nullable=False),
        sa.Column("version", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("clustered_seq", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("embedding_model", sa.String(length=128), nullable=False),
        sa.Column("embedding_dim", sa.Integer(), nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.ForeignKeyConstraint(
            ["dataset_id"],
            ["datasets.id"],
            name=op.f("fk_clustering_states_dataset_id_datasets"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("dataset_id", name=op.f("pk_clustering_states")),
    )
    op.create_table(
        "figure_clusters",
        sa.Column("id", BIGID, nullable=False),
        sa.Column("object_id", sa.String(length=64), nullable=False),
        sa.Column("dataset_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=512), server_default=sa.text("''"), nullable=False),
        sa.Column("custom_id", sa.String(length=512), nullable=True),
        sa.Column("custom_labels", JSON, nullable=True),
        sa.Column("cover_figure_id", BIGID, nullable=True),
        sa.Column("cover_chosen_by_user", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("face_count", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("image_count", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("meta_lock_version", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("attributes", JSON, nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.ForeignKeyConstraint(
            ["dataset_id"],
            ["datasets.id"],
            name=op.f("fk_figure_clusters_dataset_id_datasets"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_figure_clusters")),
        sa.UniqueConstraint("object_id", name=op.f("uq_figure_clusters_object_id")),
    )
    op.create_index(
        op.f("ix_figure_clusters_dataset_id_created_at_object_id"),
        "figure_clusters",
        ["dataset_id", "created_at", "object_id"],
    )
    op.create_index(
        op.f("ix_figure_clusters_dataset_id_face_count_object_id"),
        "figure_clusters",
        ["dataset_id", "face_count", "object_id"],
    )
    op.create_index(
        op.f("ix_figure_clusters_dataset_id_image_count_object_id"),
        "figure_clusters",
        ["dataset_id", "image_count", "object_id"],
    )
    op.create_index(
        op.f("ix_figure_clusters_dataset_id_name_object_id"),
        "figure_clusters",
        ["dataset_id", "name", "object_id"],
    )
    op.create_index(
        op.f("ix_figure_clusters_dataset_id_object_id"), "figure_clusters", ["dataset_id", "object_id"]
    )
    op.create_index(
        op.f("ix_figure_clusters_dataset_id_updated_at_object_id"),
        "figure_clusters",
        ["dataset_id", "updated_at", "object_id"],
    )

    op.create_table(
        "files",
        sa.Column("id", BIGID, nullable=False),
        sa.Column("dataset_id", sa.Integer(), nullable=False),
        sa.Column("uri", code_point_string(2048), nullable=False),
        sa.Column("object_id", sa.String(length=64), nullable=False),
        sa.Column("custom_id", code_point_string(512), nullable=True),
        sa.Column("custom_labels", JSON, nullable=True),
        sa.Column("media_type", sa.String(length=32), nullable=True),
        sa.Column("content_type", sa.String(length=256), nullable=True),
        sa.Column("filename", sa.String(length=1024), nullable=True),
        sa.Column("size", sa.BigInteger(), nullable=True),
        sa.Column("etag", sa.String(length=256), nullable=True),
        sa.Column("fingerprint", sa.String(length=256), nullable=True),
        sa.Column("image_width", sa.Integer(), nullable=True),
        sa.Column("image_height", sa.Integer(), nullable=True),
        sa.Column("orientation", sa.Integer(), nullable=True),
        sa.Column("object_status", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("figure_count", sa.Integer(), nullable=True),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("event_id", sa.String(length=128), nullable=True),
        sa.Column("attributes", JSON, nullable=True),
        sa.Column("file_modified_at", TIMESTAMP, nullable=True),
        sa.Column("produced_at", TIMESTAMP, nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.CheckConstraint(
            "object_status IN ('Pending', 'Indexed', 'Failed')", name=op.f("ck_files_object_status")
        ),
        sa.ForeignKeyConstraint(
            ["dataset_id"], ["datasets.id"], name=op.f("fk_files_dataset_id_datasets"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_files")),
        sa.UniqueConstraint("dataset_id", "uri", name=op.f("uq_files_dataset_id_uri")),
        sa.UniqueConstraint("object_id", name=op.f("uq_files_object_id")),
    )
    op.create_index(op.f("ix_files_dataset_id_custom_id"), "files", ["dataset_id", "custom_id"])
    op.create_index(op.f("ix_files_dataset_id_object_status"), "files", ["dataset_id", "object_status"])
    op.create_index(op.f("ix_files_event_id"), "files", ["event_id"])

    op.create_table(
        "tasks",
        sa.Column("id", BIGID, nullable=False),
        sa.Column("task_id", sa.String(length=128), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("dataset_id", sa.Integer(), nullable=True),
        sa.Column("task_type", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("code", sa.String(length=128), nullable=True),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("progress", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("tags", JSON, nullable=True),
        sa.Column("user_data", sa.Text(), nullable=True),
        sa.Column("event_id", sa.String(length=128), nullable=False),
        sa.Column("request_id", sa.String(length=128), nullable=True),
        sa.Column("request_definition", sa.Text(), nullable=True),
        sa.Column("notification", JSON, nullable=True),
        sa.Column("result", JSON, nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("start_time", TIMESTAMP, nullable=False),
        sa.Column("end_time", TIMESTAMP, nullable=True),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("lease_owner", sa.String(length=256), nullable=True),
        sa.Column("lease_expires_at", TIMESTAMP, nullable=True),
        sa.CheckConstraint("status IN ('Running', 'Succeeded', 'Failed')", name=op.f("ck_tasks_status")),
        sa.CheckConstraint("progress >= 0 AND progress <= 100", name=op.f("ck_tasks_progress")),
        sa.ForeignKeyConstraint(
            ["dataset_id"], ["datasets.id"], name=op.f("fk_tasks_dataset_id_datasets"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name=op.f("fk_tasks_project_id_projects"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tasks")),
        sa.UniqueConstraint("event_id", name=op.f("uq_tasks_event_id")),
        sa.UniqueConstraint("task_id", name=op.f("uq_tasks_task_id")),
    )
    op.create_index(
        op.f("ix_tasks_dataset_id_task_type_status"), "tasks", ["dataset_id", "task_type", "status"]
    )
    op.create_index(op.f("ix_tasks_project_id_end_time"), "tasks", ["project_id", "end_time"])
    op.create_index(op.f("ix_tasks_project_id_start_time"), "tasks", ["project_id", "start_time"])
    op.create_index(op.f("ix_tasks_project_id_task_id"), "tasks", ["project_id", "task_id"])
    op.create_index(
        op.f("ix_tasks_project_id_task_type_status"), "tasks", ["project_id", "task_type", "status"]
    )
    op.create_index(op.f("ix_tasks_status_lease_expires_at"), "tasks", ["status", "lease_expires_at"])

    op.create_table(
        "figures",
        sa.Column("id", BIGID, nullable=False),
        sa.Column("figure_id", sa.String(length=64), nullable=False),
        sa.Column("dataset_id", sa.Integer(), nullable=False),
        sa.Column("file_id", BIGID, nullable=True),
        sa.Column("figure_type", sa.String(length=16), server_default=sa.text("'face'"), nullable=False),
        sa.Column("left", sa.Integer(), nullable=False),
        sa.Column("top", sa.Integer(), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("confidence", sa.Float(), nullable=True),
        sa.Column("quality", sa.Float(), nullable=True),
        sa.Column("sharpness", sa.Float(), nullable=True),
        sa.Column("yaw", sa.Float(), nullable=True),
        sa.Column("pitch", sa.Float(), nullable=True),
        sa.Column("roll", sa.Float(), nullable=True),
        sa.Column("attributes", JSON, nullable=True),
        sa.Column("embedding", sa.LargeBinary(), nullable=False),
        sa.Column("embedding_model", sa.String(length=128), nullable=False),
        sa.Column("embedding_dim", sa.Integer(), nullable=False),
        sa.Column("cluster_id", BIGID, nullable=True),
        sa.Column(
            "cluster_state", sa.String(length=16), server_default=sa.text("'unavailable'"), nullable=False
        ),
        sa.Column("cluster_confidence", sa.Float(), nullable=True),
        sa.Column("pinned_cluster_id", BIGID, nullable=True),
        sa.Column("excluded_cluster_ids", JSON, nullable=True),
        sa.Column("change_seq", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("deleted_at", TIMESTAMP, nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.CheckConstraint(
            "cluster_state IN ('unavailable', 'independent', 'clustered')",
            name=op.f("ck_figures_cluster_state"),
        ),
        sa.ForeignKeyConstraint(
            ["cluster_id"],
            ["figure_clusters.id"],
            name=op.f("fk_figures_cluster_id_figure_clusters"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["dataset_id"], ["datasets.id"], name=op.f("fk_figures_dataset_id_datasets"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["file_id"], ["files.id"], name=op.f("fk_figures_file_id_files"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["pinned_cluster_id"],
            ["figure_clusters.id"],
            name=op.f("fk_figures_pinned_cluster_id_figure_clusters"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_figures")),
        sa.UniqueConstraint("figure_id", name=op.f("uq_figures_figure_id")),
    )
    op.create_index(op.f("ix_figures_cluster_id"), "figures", ["cluster_id"])
    op.create_index(op.f("ix_figures_dataset_id_change_seq"), "figures", ["dataset_id", "change_seq"])
    op.create_index(op.f("ix_figures_dataset_id_cluster_state"), "figures", ["dataset_id", "cluster_state"])
    op.create_index(op.f("ix_figures_file_id"), "figures", ["file_id"])
    op.create_index(op.f("ix_figures_pinned_cluster_id"), "figures", ["pinned_cluster_id"])
    # figure_clusters.cover_figure_id -> figures.id closes a cycle, so it comes once both tables exist
    # (batch mode rebuilds the still-empty table on SQLite, which cannot add a constraint in place).
    with op.batch_alter_table("figure_clusters") as batch_op:
        batch_op.create_foreign_key(
            op.f("fk_figure_clusters_cover_figure_id_figures"),
            "figures",
            ["cover_figure_id"],
            ["id"],
            ondelete="SET NULL",
        )


def downgrade() -> None:
    with op.batch_alter_table("figure_clusters") as batch_op:
        batch_op.drop_constraint(op.f("fk_figure_clusters_cover_figure_id_figures"), type_="foreignkey")
    for table in (
        "figures",
        "tasks",
        "files",
        "figure_clusters",
        "clustering_states",
        "bindings",
        "datasets",
        "signature_nonces",
        "projects",
        "outbox",
        "access_keys",
    ):
        op.drop_table(table)
