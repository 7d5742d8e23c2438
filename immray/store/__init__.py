"""immray's persistence: SQLAlchemy 2 tables, Alembic migrations, SQLite (default) and PostgreSQL.

Services open sessions from :func:`session_factory` and own their transactions; the schema comes only
from :func:`upgrade`.
"""

from immray.store.changes import next_change_seq
from immray.store.engine import DatabaseURLError, make_engine, normalize_url, session_factory
from immray.store.filters import starts_with
from immray.store.migrate import UpgradeResult, head_revision, upgrade
from immray.store.models import (
    INDEPENDENT_CLUSTER_ID,
    UNAVAILABLE_CLUSTER_ID,
    AccessKey,
    Base,
    Binding,
    ClusteringState,
    ClusterState,
    Dataset,
    Figure,
    FigureCluster,
    File,
    ObjectStatus,
    OutboxMessage,
    Project,
    SignatureNonce,
    Task,
    TaskStatus,
    new_cluster_object_id,
    new_task_id,
)
from immray.store.nonces import DatabaseNonceStore, prune_nonces, remember_nonce
from immray.store.paging import InvalidPageToken, Page, SortKey, keyset_page
from immray.store.types import embedding_from_bytes, embedding_to_bytes, utcnow

__all__ = [
    "INDEPENDENT_CLUSTER_ID",
    "UNAVAILABLE_CLUSTER_ID",
    "AccessKey",
    "Base",
    "Binding",
    "ClusterState",
    "ClusteringState",
    "DatabaseNonceStore",
    "DatabaseURLError",
    "Dataset",
    "Figure",
    "FigureCluster",
    "File",
    "InvalidPageToken",
    "ObjectStatus",
    "OutboxMessage",
    "Page",
    "Project",
    "SignatureNonce",
    "SortKey",
    "Task",
    "TaskStatus",
    "UpgradeResult",
    "embedding_from_bytes",
    "embedding_to_bytes",
    "head_revision",
    "keyset_page",
    "make_engine",
    "next_change_seq",
    "new_cluster_object_id",
    "new_task_id",
    "normalize_url",
    "prune_nonces",
    "remember_nonce",
    "session_factory",
    "starts_with",
    "upgrade",
    "utcnow",
]
