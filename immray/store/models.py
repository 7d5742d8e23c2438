"""The tables of immray, for the whole product: IMM resources, access keys, nonces and the outbox.

Each class maps one table. Columns carry the IMM field they back in a comment where the name differs.
Everything a dataset owns goes when the dataset goes (``ON DELETE CASCADE``, enforced on SQLite too).
The schema is created only by the Alembic migrations in ``migrations/versions``; a test checks that they
produce exactly these models.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

import numpy as np
from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from immray.store.types import (
    EMBEDDING_DTYPE,
    BigIntKey,
    JSONType,
    UTCDateTime,
    code_point_string,
    embedding_from_bytes,
    embedding_to_bytes,
    utcnow,
)

# Named constraints, so later migrations (and SQLite batch mode) can address them on both backends.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

UNAVAILABLE_CLUSTER_ID = "figure-cluster-id-unavailable"
INDEPENDENT_CLUSTER_ID = "figure-cluster-id-independent"


class ObjectStatus(StrEnum):
    """A file's indexing progress (File.ObjectStatus)."""

    PENDING = "Pending"
    INDEXED = "Indexed"
    FAILED = "Failed"


class TaskStatus(StrEnum):
    """The only task states IMM documents; a queued task is Running without a lease."""

    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


class ClusterState(StrEnum):
    """Where a face stands with clustering. ``clustered`` goes with a non-null ``cluster_id``."""

    UNAVAILABLE = "unavailable"  # not clustered yet (figure-cluster-id-unavailable)
    INDEPENDENT = "independent"  # considered, joined nothing (figure-cluster-id-independent)
    CLUSTERED = "clustered"


def new_cluster_object_id() -> str:
    return f"Cluster-{uuid.uuid4()}"


def new_task_id(task_type: str) -> str:
    return f"{task_type}-{uuid.uuid4()}"


def _in(column: str, values: type[StrEnum]) -> str:
    return f"{column} IN ({', '.join(repr(v.value) for v in values)})"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Timestamped:
    """CreateTime / UpdateTime, set by the store so no caller forgets them."""

    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class Project(Timestamped, Base):
    __tablename__ = "projects"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(code_point_string(128), unique=True)  # ProjectName; Prefix lists it
    description: Mapped[str | None] = mapped_column(String(256))
    service_role: Mapped[str | None] = mapped_column(String(256))
    template_id: Mapped[str | None] = mapped_column(String(256))
    project_max_dataset_count: Mapped[int | None] = mapped_column(BigInteger)
    dataset_max_bind_count: Mapped[int | None] = mapped_column(BigInteger)
    dataset_max_file_count: Mapped[int | None] = mapped_column(BigInteger)
    dataset_max_entity_count: Mapped[int | None] = mapped_column(BigInteger)
    dataset_max_relation_count: Mapped[int | None] = mapped_column(BigInteger)
    dataset_max_total_file_size: Mapped[int | None] = mapped_column(BigInteger)
    engine_concurrency: Mapped[int | None] = mapped_column(Integer)
    project_queries_per_second: Mapped[int | None] = mapped_column(Integer)
    # Tags as the request gives them: [{"Key": ..., "Value": ...}].
    tags: Mapped[list[dict[str, Any]] | None] = mapped_column(JSONType)

    datasets: Mapped[list[Dataset]] = relationship(
        back_populates="project", cascade="all, delete-orphan", passive_deletes=True
    )


class Dataset(Timestamped, Base):
    __tablename__ = "datasets"
    __table_args__ = (UniqueConstraint("project_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(code_point_string(128))  # DatasetName; Prefix lists it
    description: Mapped[str | None] = mapped_column(String(256))
    template_id: Mapped[str | None] = mapped_column(String(256))
    dataset_max_bind_count: Mapped[int | None] = mapped_column(BigInteger)
    dataset_max_file_count: Mapped[int | None] = mapped_column(BigInteger)
    dataset_max_entity_count: Mapped[int | None] = mapped_column(BigInteger)
    dataset_max_relation_count: Mapped[int | None] = mapped_column(BigInteger)
    dataset_max_total_file_size: Mapped[int | None] = mapped_column(BigInteger)
    # [{"Name": ..., "Value": ...}] as given; clustering settings (FigureClusterMinFaces, ...) live here.
    workflow_parameters: Mapped[list[dict[str, Any]] | None] = mapped_column(JSONType)
    # The last change sequence number handed out (see store.changes.next_change_seq).
    change_seq: Mapped[int] = mapped_column(BigInteger, default=0, server_default=text("0"))

    project: Mapped[Project] = relationship(back_populates="datasets")
    clustering_state: Mapped[ClusteringState | None] = relationship(
        back_populates="dataset", cascade="all, delete-orphan", passive_deletes=True
    )


class ClusteringState(Base):
    """The clustering engine's saved state of one dataset (faiss index + engine state), as one blob.

    A table of its own rather than a column of ``datasets``: the blob can be hundreds of megabytes and the
    dataset row is read and updated (``change_seq``) on every indexing request.
    """

    __tablename__ = "clustering_states"

    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"), primary_key=True)
    state: Mapped[bytes] = mapped_column(LargeBinary)
    # +1 on every save: a task that saves over a version it did not load has lost a race.
    version: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    # The state reflects every figure change with change_seq <= clustered_seq.
    clustered_seq: Mapped[int] = mapped_column(BigInteger, default=0, server_default=text("0"))
    embedding_model: Mapped[str] = mapped_column(String(128))
    embedding_dim: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)

    dataset: Mapped[Dataset] = relationship(back_populates="clustering_state")


class File(Timestamped, Base):
    __tablename__ = "files"
    __table_args__ = (
        UniqueConstraint("dataset_id", "uri"),
        CheckConstraint(_in("object_status", ObjectStatus), name="object_status"),
        Index(None, "dataset_id", "custom_id"),
        Index(None, "dataset_id", "object_status"),
    )

    id: Mapped[int] = mapped_column(BigIntKey, primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"))
    # The unique (dataset_id, uri) index also serves URI prefix queries (store.filters.starts_with).
    uri: Mapped[str] = mapped_column(code_point_string(2048))
    object_id: Mapped[str] = mapped_column(String(64), unique=True, default=lambda: uuid.uuid4().hex)
    custom_id: Mapped[str | None] = mapped_column(code_point_string(512))
    custom_labels: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    media_type: Mapped[str | None] = mapped_column(String(32))
    content_type: Mapped[str | None] = mapped_column(String(256))
    filename: Mapped[str | None] = mapped_column(String(1024))
    size: Mapped[int | None] = mapped_column(BigInteger)
    etag: Mapped[str | None] = mapped_column(String(256))
    # What the source said about the bytes last analysed (etag, or mtime+size, or a hash): equal means
    # re-indexing is a no-op.
    fingerprint: Mapped[str | None] = mapped_column(String(256))
    image_width: Mapped[int | None] = mapped_column(Integer)
    image_height: Mapped[int | None] = mapped_column(Integer)
    orientation: Mapped[int | None] = mapped_column(Integer)
    object_status: Mapped[str] = mapped_column(String(16), default=ObjectStatus.PENDING)
    reason: Mapped[str | None] = mapped_column(Text)
    figure_count: Mapped[int | None] = mapped_column(Integer)  # present once Indexed
    # Analysis attempts, so a file whose worker died can be retried a bounded number of times.
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    # Held while one analysis works on the Pending file: a second analysis of it (submitted again by
    # another replica's start) does nothing until the lease ends; an expired one is a dead analysis's.
    analysis_lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # The EventId of the index request that last queued this file (its notification lists the files).
    event_id: Mapped[str | None] = mapped_column(String(128), index=True)
    # Other InputFile fields echoed back as given (Title, ProduceTime, LatLong, Labels, ...).
    attributes: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    file_modified_at: Mapped[datetime | None] = mapped_column(UTCDateTime())  # FileModifiedTime
    produced_at: Mapped[datetime | None] = mapped_column(UTCDateTime())  # ProduceTime

    figures: Mapped[list[Figure]] = relationship(back_populates="file", passive_deletes=True)


class FigureCluster(Timestamped, Base):
    __tablename__ = "figure_clusters"
    __table_args__ = (
        Index(None, "dataset_id", "object_id"),
        Index(None, "dataset_id", "face_count", "object_id"),
        Index(None, "dataset_id", "image_count", "object_id"),
        Index(None, "dataset_id", "created_at", "object_id"),
        Index(None, "dataset_id", "updated_at", "object_id"),
        Index(None, "dataset_id", "name", "object_id"),
    )

    id: Mapped[int] = mapped_column(BigIntKey, primary_key=True)
    object_id: Mapped[str] = mapped_column(String(64), unique=True, default=new_cluster_object_id)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"))
    # Empty rather than NULL so that sorting and keyset paging by Name need no NULL handling.
    name: Mapped[str] = mapped_column(String(512), default="", server_default=text("''"))
    custom_id: Mapped[str | None] = mapped_column(String(512))
    custom_labels: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    # The figure shown as this person's face; the FK is added after `figures` exists (a cycle).
    cover_figure_id: Mapped[int | None] = mapped_column(
        ForeignKey("figures.id", ondelete="SET NULL", use_alter=True)
    )
    cover_chosen_by_user: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    face_count: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    image_count: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    meta_lock_version: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    # Room for what a future model estimates per person (Gender, AverageAge, ...); never invented.
    attributes: Mapped[dict[str, Any] | None] = mapped_column(JSONType)

    cover_figure: Mapped[Figure | None] = relationship(foreign_keys=[cover_figure_id], post_update=True)
    figures: Mapped[list[Figure]] = relationship(
        back_populates="cluster", foreign_keys="Figure.cluster_id", passive_deletes=True
    )


class Figure(Timestamped, Base):
    """One face. Survives its file's deletion as a tombstone until a clustering task takes it out."""

    __tablename__ = "figures"
    __table_args__ = (
        CheckConstraint(_in("cluster_state", ClusterState), name="cluster_state"),
        Index(None, "dataset_id", "change_seq"),
        Index(None, "dataset_id", "cluster_state"),
    )

    id: Mapped[int] = mapped_column(BigIntKey, primary_key=True)
    figure_id: Mapped[str] = mapped_column(String(64), unique=True, default=lambda: str(uuid.uuid4()))
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"))
    # NULL once the file's metadata is deleted (deleted_at says when).
    file_id: Mapped[int | None] = mapped_column(ForeignKey("files.id", ondelete="SET NULL"), index=True)
    figure_type: Mapped[str] = mapped_column(String(16), default="face", server_default=text("'face'"))
    # Boundary, in pixels of the image as displayed (EXIF orientation applied).
    left: Mapped[int] = mapped_column(Integer)
    top: Mapped[int] = mapped_column(Integer)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    confidence: Mapped[float | None] = mapped_column(Float)  # FigureConfidence
    quality: Mapped[float | None] = mapped_column(Float)  # FaceQuality
    sharpness: Mapped[float | None] = mapped_column(Float)
    yaw: Mapped[float | None] = mapped_column(Float)  # HeadPose, degrees
    pitch: Mapped[float | None] = mapped_column(Float)
    roll: Mapped[float | None] = mapped_column(Float)
    # Attributes a model really estimated beyond the above (Age, Gender, ...); absent, never invented.
    attributes: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    embedding: Mapped[bytes] = mapped_column(LargeBinary)  # little-endian float32
    embedding_model: Mapped[str] = mapped_column(String(128))
    embedding_dim: Mapped[int] = mapped_column(Integer)
    cluster_id: Mapped[int | None] = mapped_column(
        ForeignKey("figure_clusters.id", ondelete="SET NULL"), index=True
    )
    cluster_state: Mapped[str] = mapped_column(
        String(16), default=ClusterState.UNAVAILABLE, server_default=text(f"'{ClusterState.UNAVAILABLE}'")
    )
    cluster_confidence: Mapped[float | None] = mapped_column(Float)  # FigureClusterConfidence
    # User corrections, constraints for every later task: the cluster the user put this face in, and the
    # clusters (ObjectIds) the user took it out of.
    pinned_cluster_id: Mapped[int | None] = mapped_column(
        ForeignKey("figure_clusters.id", ondelete="SET NULL"), index=True
    )
    excluded_cluster_ids: Mapped[list[str] | None] = mapped_column(JSONType)
    # Bumped (store.changes.next_change_seq) whenever the face is added, moved or removed, so a
    # clustering task processes exactly change_seq > ClusteringState.clustered_seq.
    change_seq: Mapped[int] = mapped_column(BigInteger, default=0, server_default=text("0"))
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())  # tombstone

    file: Mapped[File | None] = relationship(back_populates="figures")
    cluster: Mapped[FigureCluster | None] = relationship(back_populates="figures", foreign_keys=[cluster_id])
    pinned_cluster: Mapped[FigureCluster | None] = relationship(foreign_keys=[pinned_cluster_id])

    @property
    def vector(self) -> np.ndarray:
        """The embedding as a float32 array."""
        return embedding_from_bytes(self.embedding, self.embedding_dim)

    def set_vector(self, vector: Any, model: str) -> None:
        """Store an embedding with the name of the model that made it (only equal models compare)."""
        data = embedding_to_bytes(vector)
        self.embedding = data
        self.embedding_dim = len(data) // EMBEDDING_DTYPE.itemsize
        self.embedding_model = model

    @property
    def figure_cluster_id(self) -> str:
        """FigureClusterId as IMM shows it: the cluster's ObjectId or one of the reserved values."""
        if self.cluster is not None:
            return self.cluster.object_id
        if self.cluster_state == ClusterState.INDEPENDENT:
            return INDEPENDENT_CLUSTER_ID
        return UNAVAILABLE_CLUSTER_ID


class Task(Base):
    __tablename__ = "tasks"
    __table_args__ = (
        CheckConstraint(_in("status", TaskStatus), name="status"),
        CheckConstraint("progress >= 0 AND progress <= 100", name="progress"),
        Index(None, "project_id", "task_id"),
        Index(None, "project_id", "task_type", "status"),
        Index(None, "project_id", "start_time"),
        Index(None, "project_id", "end_time"),
        Index(None, "dataset_id", "task_type", "status"),
        Index(None, "status", "lease_expires_at"),
        Index(None, "serial_key", "status"),
        Index(None, "end_time"),
        # The database's own guard for "one running job per key": at most one leased task per serial_key.
        Index(
            "uq_tasks_serial_key_leased",
            "serial_key",
            unique=True,
            sqlite_where=text("lease_owner IS NOT NULL"),
            postgresql_where=text("lease_owner IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigIntKey, primary_key=True)
    task_id: Mapped[str] = mapped_column(String(128), unique=True)  # <TaskType>-<uuid4>
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    dataset_id: Mapped[int | None] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"))
    task_type: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default=TaskStatus.RUNNING)
    code: Mapped[str | None] = mapped_column(String(128))
    message: Mapped[str | None] = mapped_column(Text)
    progress: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    tags: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    user_data: Mapped[str | None] = mapped_column(Text)
    event_id: Mapped[str] = mapped_column(String(128), unique=True)
    request_id: Mapped[str | None] = mapped_column(String(128))
    request_definition: Mapped[str | None] = mapped_column(Text)  # TaskRequestDefinition, JSON text
    notification: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    # Task-specific outcome (clusters created/updated/deleted, faces assigned) for GetTask and the message.
    result: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    start_time: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    end_time: Mapped[datetime | None] = mapped_column(UTCDateTime())
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    # Who runs it and until when; a Running task whose lease expired was left by a dead process.
    lease_owner: Mapped[str | None] = mapped_column(String(256))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # The registered job that runs this task and its arguments, so any worker can (re)run it after a restart.
    job_name: Mapped[str | None] = mapped_column(String(128))
    job_payload: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    # Tasks sharing a key run one at a time, oldest first (e.g. "dataset:<id>" for clustering).
    serial_key: Mapped[str | None] = mapped_column(String(256))

    project: Mapped[Project] = relationship()
    dataset: Mapped[Dataset | None] = relationship()


class Binding(Timestamped, Base):
    """A location (oss://bucket/prefix, file:///dir) whose images are indexed into a dataset."""

    __tablename__ = "bindings"
    __table_args__ = (UniqueConstraint("dataset_id", "uri"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"))
    uri: Mapped[str] = mapped_column(String(2048))
    state: Mapped[str] = mapped_column(String(16), default="Ready")
    phase: Mapped[str | None] = mapped_column(String(32))
    reason: Mapped[str | None] = mapped_column(Text)
    # Where the scanner stands (last key, last scan time, ...), its own business.
    cursor: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    # The runner scanning it and until when (migration 0003); an expired lease is taken over.
    lease_owner: Mapped[str | None] = mapped_column(String(256))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class AccessKey(Base):
    """A immray access key. The secret is kept as is: HMAC verification needs it."""

    __tablename__ = "access_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    access_key_id: Mapped[str] = mapped_column(String(64), unique=True)
    secret: Mapped[str] = mapped_column(String(128))
    description: Mapped[str | None] = mapped_column(String(256))
    # RAM-style: {"Version": "1", "Statement": [{"Effect", "Action", "Resource"}, ...]}
    policy: Mapped[dict[str, Any]] = mapped_column(JSONType)
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class SignatureNonce(Base):
    """A nonce seen in a signed request; the unique key makes replays fail in any process."""

    __tablename__ = "signature_nonces"

    id: Mapped[int] = mapped_column(BigIntKey, primary_key=True)
    nonce: Mapped[str] = mapped_column(String(256), unique=True)
    # After this the request's timestamp is out of the window anyway, so the row can go.
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)


class OutboxMessage(Base):
    """A notification written in the same transaction as the result it reports; sent from here."""

    __tablename__ = "outbox"
    __table_args__ = (Index(None, "delivered_at", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(BigIntKey, primary_key=True)
    # The envelope id, so receivers can drop the duplicates at-least-once delivery brings.
    message_id: Mapped[str] = mapped_column(String(64), unique=True, default=lambda: str(uuid.uuid4()))
    topic: Mapped[str] = mapped_column(String(256))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType)
    task_id: Mapped[str | None] = mapped_column(String(128), index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
