"""Every table round-trips through a real database; constraints and cascades hold on both backends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.exc import IntegrityError, StatementError
from sqlalchemy.orm import Session, sessionmaker

from immray.store import (
    INDEPENDENT_CLUSTER_ID,
    UNAVAILABLE_CLUSTER_ID,
    AccessKey,
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
    make_engine,
    new_task_id,
    session_factory,
)

T0 = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)


def count(sessions: sessionmaker[Session], model: type) -> int:
    with sessions() as session:
        return session.scalar(select(func.count()).select_from(model))


def test_project_round_trip(sessions: sessionmaker[Session]) -> None:
    tags = [{"Key": "env", "Value": "prod"}, {"Key": "team", "Value": "ünïcode"}]
    with sessions.begin() as session:
        session.add(
            Project(
                name="photos",
                description="family",
                service_role="AliyunIMMDefaultRole",
                template_id="Official:FaceManagement",
                project_max_dataset_count=10,
                dataset_max_file_count=100_000_000,
                dataset_max_total_file_size=2**50,
                tags=tags,
            )
        )
    with sessions() as session:
        project = session.scalars(select(Project)).one()
        assert (project.name, project.description, project.template_id) == (
            "photos",
            "family",
            "Official:FaceManagement",
        )
        assert project.dataset_max_total_file_size == 2**50
        assert project.tags == tags
        assert project.created_at.tzinfo is not None and project.updated_at >= project.created_at


def test_dataset_round_trip_with_workflow_parameters(sessions: sessionmaker[Session]) -> None:
    params = [{"Name": "FigureClusterMinFaces", "Value": "2"}]
    with sessions.begin() as session:
        session.add(
            Dataset(project=Project(name="p"), name="d", workflow_parameters=params, dataset_max_file_count=5)
        )
    with sessions() as session:
        dataset = session.scalars(select(Dataset)).one()
        assert dataset.project.name == "p"
        assert dataset.workflow_parameters == params
        assert (dataset.change_seq, dataset.dataset_max_file_count) == (0, 5)


def test_clustering_state_blob_round_trip(sessions: sessionmaker[Session], seed) -> None:
    dataset_id = seed.dataset()
    blob = np.random.default_rng(1).bytes(3 * 1024 * 1024) + b"\x00\xff" * 10
    with sessions.begin() as session:
        session.add(
            ClusteringState(
                dataset_id=dataset_id, state=blob, embedding_model="dlib-resnet", embedding_dim=128
            )
        )
    with sessions.begin() as session:
        state = session.get(Dataset, dataset_id).clustering_state
        assert state.state == blob and state.version == 0 and state.clustered_seq == 0
        state.state, state.version, state.clustered_seq = b"new", state.version + 1, 7
    with sessions() as session:
        state = session.get(ClusteringState, dataset_id)
        assert (state.state, state.version, state.clustered_seq) == (b"new", 1, 7)


def test_file_round_trip(sessions: sessionmaker[Session], seed) -> None:
    dataset_id = seed.dataset()
    with sessions.begin() as session:
        session.add(
            File(
                dataset_id=dataset_id,
                uri="oss://bucket/äöü/photo 1.jpg",
                custom_id="c-1",
                custom_labels={"album": "summer", "n": 3, "nested": {"ok": True}},
                content_type="image/jpeg",
                size=5_000_000_000,
                fingerprint="etag:abc",
                image_width=4000,
                image_height=3000,
                file_modified_at=T0,
                attributes={"Title": "beach"},
            )
        )
    with sessions.begin() as session:
        file = session.scalars(select(File)).one()
        assert file.object_status == ObjectStatus.PENDING and file.figure_count is None
        assert file.uri == "oss://bucket/äöü/photo 1.jpg" and file.size == 5_000_000_000
        assert file.custom_labels == {"album": "summer", "n": 3, "nested": {"ok": True}}
        assert file.file_modified_at == T0 and len(file.object_id) == 32
        file.object_status, file.figure_count = ObjectStatus.INDEXED, 0
    with sessions() as session:
        file = session.scalars(select(File)).one()
        assert (file.object_status, file.figure_count) == ("Indexed", 0)


def test_figure_round_trip_and_embedding_bytes(sessions: sessionmaker[Session], seed) -> None:
    dataset_id = seed.dataset()
    file_id = seed.file(dataset_id, "oss://b/1.jpg")
    vector = np.random.default_rng(7).standard_normal(128).astype(np.float32)
    vector[:3] = [np.float32(1e-38), np.float32(-3.4e38), np.float32(0.1)]  # extremes keep every bit
    with sessions.begin() as session:
        figure = Figure(
            dataset_id=dataset_id,
            file_id=file_id,
            left=1,
            top=2,
            width=3,
            height=4,
            confidence=0.99,
            quality=0.5,
            sharpness=0.25,
            yaw=-12.5,
            pitch=3.0,
            roll=0.0,
        )
        figure.set_vector(vector, model="dlib-resnet-v1")
        session.add(figure)
    with sessions() as session:
        figure = session.scalars(select(Figure)).one()
        assert figure.embedding == vector.astype("<f4").tobytes()
        assert (figure.embedding_model, figure.embedding_dim) == ("dlib-resnet-v1", 128)
        restored = figure.vector
        assert restored.dtype == np.float32 and np.array_equal(restored, vector)
        assert (figure.left, figure.top, figure.width, figure.height) == (1, 2, 3, 4)
        assert (figure.yaw, figure.pitch, figure.roll) == (-12.5, 3.0, 0.0)
        assert figure.figure_type == "face" and len(figure.figure_id) == 36
        assert figure.figure_cluster_id == UNAVAILABLE_CLUSTER_ID
        assert figure.file.uri == "oss://b/1.jpg"


def test_an_embedding_of_the_wrong_shape_is_refused() -> None:
    figure = Figure()
    with pytest.raises(ValueError, match="1-d"):
        figure.set_vector(np.zeros((2, 64)), model="m")
    with pytest.raises(ValueError, match="NaN"):
        figure.set_vector([0.0, float("nan")], model="m")
    figure.embedding, figure.embedding_dim = b"\x00" * 12, 4
    with pytest.raises(ValueError, match="expected 4 float32"):
        _ = figure.vector


def test_figure_cluster_round_trip_and_figure_cluster_ids(sessions: sessionmaker[Session], seed) -> None:
    dataset_id = seed.dataset()
    file_id = seed.file(dataset_id, "oss://b/1.jpg")
    with sessions.begin() as session:
        cluster = FigureCluster(dataset_id=dataset_id, custom_labels={"k": "v"}, face_count=2, image_count=1)
        clustered = seed.new_figure(
            dataset_id, file_id, 1, cluster=cluster, cluster_state=ClusterState.CLUSTERED
        )
        alone = seed.new_figure(dataset_id, file_id, 2, cluster_state=ClusterState.INDEPENDENT)
        session.add_all([clustered, alone])
        session.flush()
        cluster.cover_figure = clustered
        cluster.cover_chosen_by_user = True
    with sessions.begin() as session:
        cluster = session.scalars(select(FigureCluster)).one()
        assert cluster.object_id.startswith("Cluster-") and len(cluster.object_id) == 44
        assert (cluster.name, cluster.meta_lock_version, cluster.custom_labels) == ("", 0, {"k": "v"})
        assert cluster.cover_figure.figure_cluster_id == cluster.object_id and cluster.cover_chosen_by_user
        assert [f.figure_cluster_id for f in cluster.figures] == [cluster.object_id]
        alone = session.scalars(select(Figure).where(Figure.cluster_id.is_(None))).one()
        assert alone.figure_cluster_id == INDEPENDENT_CLUSTER_ID
        cluster.name, cluster.meta_lock_version = "Alice", cluster.meta_lock_version + 1
    with sessions() as session:
        cluster = session.scalars(select(FigureCluster)).one()
        assert (cluster.name, cluster.meta_lock_version) == ("Alice", 1)
        assert cluster.updated_at >= cluster.created_at


def test_figure_user_constraints_round_trip(sessions: sessionmaker[Session], seed) -> None:
    dataset_id = seed.dataset()
    pinned = seed.cluster(dataset_id, object_id="Cluster-pinned")
    with sessions.begin() as session:
        session.add(
            seed.new_figure(
                dataset_id, None, pinned_cluster_id=pinned, excluded_cluster_ids=["Cluster-a", "Cluster-b"]
            )
        )
    with sessions() as session:
        figure = session.scalars(select(Figure)).one()
        assert figure.pinned_cluster.object_id == "Cluster-pinned"
        assert figure.excluded_cluster_ids == ["Cluster-a", "Cluster-b"]


def test_task_round_trip(sessions: sessionmaker[Session], seed) -> None:
    dataset_id = seed.dataset()
    task_id = new_task_id("FaceClustering")
    tags = {"env": "test", "n": 1, "flag": True}
    notification = {"MNS": {"TopicName": "people"}}
    with sessions.begin() as session:
        project_id = session.get(Dataset, dataset_id).project_id
        session.add(
            Task(
                task_id=task_id,
                project_id=project_id,
                dataset_id=dataset_id,
                task_type="FaceClustering",
                tags=tags,
                user_data="x" * 2048,
                event_id="0ED-1",
                request_definition='{"ProjectName":"proj"}',
                notification=notification,
                lease_owner="worker-1:123",
                lease_expires_at=T0,
            )
        )
    with sessions.begin() as session:
        task = session.scalars(select(Task)).one()
        assert task.task_id.startswith("FaceClustering-") and len(task.task_id) == len("FaceClustering-") + 36
        assert (task.status, task.progress, task.attempts, task.end_time) == (TaskStatus.RUNNING, 0, 0, None)
        assert (task.tags, task.notification, task.user_data) == (tags, notification, "x" * 2048)
        assert task.lease_expires_at == T0 and task.dataset.name == "ds"
        task.status, task.progress, task.end_time, task.result = "Succeeded", 100, T0, {"ClustersCreated": 2}
    with sessions() as session:
        task = session.scalars(select(Task)).one()
        assert (task.status, task.progress, task.end_time, task.result) == (
            "Succeeded",
            100,
            T0,
            {"ClustersCreated": 2},
        )


def test_binding_access_key_and_outbox_round_trip(sessions: sessionmaker[Session], seed) -> None:
    dataset_id = seed.dataset()
    policy = {
        "Version": "1",
        "Statement": [
            {"Effect": "Allow", "Action": ["imm:*"], "Resource": ["acs:imm:*:*:project/p/dataset/*"]},
            {"Effect": "Deny", "Action": "imm:DeleteDataset", "Resource": "*"},
        ],
    }
    payload = {"id": "m1", "source": "acs.imm", "content": '{"Status":"Succeeded"}'}
    with sessions.begin() as session:
        session.add(
            Binding(dataset_id=dataset_id, uri="file:///photos", phase="FullScanning", cursor={"after": "a"})
        )
        session.add(AccessKey(access_key_id="IRADMIN", secret="s3cret", policy=policy, is_admin=True))
        session.add(
            OutboxMessage(topic="people", payload=payload, task_id="FaceClustering-1", next_attempt_at=T0)
        )
    with sessions.begin() as session:
        binding = session.scalars(select(Binding)).one()
        assert (binding.uri, binding.state, binding.phase, binding.cursor) == (
            "file:///photos",
            "Ready",
            "FullScanning",
            {"after": "a"},
        )
        key = session.scalars(select(AccessKey)).one()
        assert (key.secret, key.policy, key.is_admin, key.revoked_at) == ("s3cret", policy, True, None)
        message = session.scalars(select(OutboxMessage)).one()
        assert (message.payload, message.attempts, message.delivered_at) == (payload, 0, None)
        assert message.next_attempt_at == T0 and len(message.message_id) == 36
        message.attempts, message.last_error, message.delivered_at = 1, "timeout", T0 + timedelta(seconds=3)
        key.revoked_at = T0
    with sessions() as session:
        message = session.scalars(select(OutboxMessage)).one()
        assert (message.attempts, message.last_error) == (1, "timeout")
        assert message.delivered_at == T0 + timedelta(seconds=3)
        assert session.scalars(select(AccessKey)).one().revoked_at == T0


def test_signature_nonce_round_trip(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        session.add(SignatureNonce(nonce="n-1", expires_at=T0))
    with sessions() as session:
        assert session.scalars(select(SignatureNonce)).one().expires_at == T0


@pytest.mark.parametrize(
    "make_duplicate",
    [
        pytest.param(lambda seed, d, p: Project(name="proj"), id="project name"),
        pytest.param(lambda seed, d, p: Dataset(project_id=p, name="ds"), id="dataset per project"),
        pytest.param(lambda seed, d, p: File(dataset_id=d, uri="oss://b/1.jpg"), id="file uri per dataset"),
        pytest.param(lambda seed, d, p: seed.new_figure(d, None, figure_id="fig-1"), id="figure id"),
        pytest.param(lambda seed, d, p: FigureCluster(dataset_id=d, object_id="Cluster-1"), id="cluster id"),
    ],
)
def test_uniqueness(sessions: sessionmaker[Session], seed, make_duplicate) -> None:
    dataset_id = seed.dataset("proj", "ds")
    seed.file(dataset_id, "oss://b/1.jpg")
    seed.figure(dataset_id, None, figure_id="fig-1")
    seed.cluster(dataset_id, object_id="Cluster-1")
    with sessions() as session:
        project_id = session.get(Dataset, dataset_id).project_id
        session.add(make_duplicate(seed, dataset_id, project_id))
        with pytest.raises(IntegrityError):
            session.commit()


def test_same_names_in_different_scopes_are_allowed(sessions: sessionmaker[Session], seed) -> None:
    first = seed.dataset("p1", "ds")
    second = seed.dataset("p2", "ds")  # same dataset name, other project
    other = seed.dataset("p1", "other")
    for dataset_id in (first, second, other):
        seed.file(dataset_id, "oss://b/1.jpg")  # same URI, other dataset
    assert count(sessions, File) == 3


def test_check_constraints_refuse_unknown_states(sessions: sessionmaker[Session], seed) -> None:
    dataset_id = seed.dataset()
    for row in (
        File(dataset_id=dataset_id, uri="oss://b/x", object_status="Done"),
        seed.new_figure(dataset_id, None, cluster_state="lost"),
    ):
        with sessions() as session:
            session.add(row)
            with pytest.raises(IntegrityError):
                session.commit()


def test_deleting_a_dataset_deletes_everything_it_owns(sessions: sessionmaker[Session], seed) -> None:
    doomed = seed.dataset("proj", "doomed")
    kept = seed.dataset("proj", "kept")
    for dataset_id in (doomed, kept):
        file_id = seed.file(dataset_id, "oss://b/1.jpg")
        cluster_id = seed.cluster(dataset_id)
        figure_id = seed.figure(dataset_id, file_id, cluster_id=cluster_id, cluster_state="clustered")
        with sessions.begin() as session:
            session.get(FigureCluster, cluster_id).cover_figure_id = figure_id
            project_id = session.get(Dataset, dataset_id).project_id
            session.add(
                ClusteringState(dataset_id=dataset_id, state=b"s", embedding_model="m", embedding_dim=1)
            )
            session.add(Binding(dataset_id=dataset_id, uri="file:///x"))
            session.add(
                Task(
                    task_id=f"t-{dataset_id}",
                    event_id=f"e-{dataset_id}",
                    project_id=project_id,
                    dataset_id=dataset_id,
                    task_type="FaceClustering",
                )
            )
    owned = (File, Figure, FigureCluster, ClusteringState, Binding, Task)
    assert [count(sessions, model) for model in owned] == [2] * len(owned)

    with sessions.begin() as session:
        session.delete(session.get(Dataset, doomed))

    assert [count(sessions, model) for model in owned] == [1] * len(owned)
    with sessions() as session:
        for model in owned:
            assert session.scalars(select(model)).one().dataset_id == kept


def test_deleting_a_project_deletes_its_datasets_and_tasks(sessions: sessionmaker[Session], seed) -> None:
    dataset_id = seed.dataset("gone", "ds")
    seed.figure(dataset_id, seed.file(dataset_id, "oss://b/1.jpg"))
    seed.dataset("stays", "ds")
    with sessions.begin() as session:
        project = session.scalars(select(Project).where(Project.name == "gone")).one()
        session.add(Task(task_id="t", event_id="e", project=project, task_type="FaceClustering"))
    with sessions.begin() as session:
        session.delete(session.scalars(select(Project).where(Project.name == "gone")).one())
    assert [count(sessions, m) for m in (Project, Dataset, Task, File, Figure)] == [1, 1, 0, 0, 0]


def test_cascades_hold_for_plain_sql_deletes(engine: Engine, seed) -> None:
    """ON DELETE CASCADE is the database's, not the ORM's: SQLite enforces it because foreign keys are on."""
    dataset_id = seed.dataset()
    seed.figure(dataset_id, seed.file(dataset_id, "oss://b/1.jpg"))
    with engine.begin() as connection:
        connection.exec_driver_sql(f"DELETE FROM datasets WHERE id = {dataset_id}")
        assert connection.exec_driver_sql("SELECT count(*) FROM figures").scalar() == 0
        assert connection.exec_driver_sql("SELECT count(*) FROM files").scalar() == 0


def test_a_dangling_foreign_key_is_refused(sessions: sessionmaker[Session]) -> None:
    with sessions() as session:
        session.add(File(dataset_id=424242, uri="oss://b/x"))
        with pytest.raises(IntegrityError):
            session.commit()


def test_deleting_a_file_leaves_its_faces_as_tombstones(sessions: sessionmaker[Session], seed) -> None:
    dataset_id = seed.dataset()
    file_id = seed.file(dataset_id, "oss://b/1.jpg")
    figure_id = seed.figure(dataset_id, file_id)
    with sessions.begin() as session:
        session.get(Figure, figure_id).deleted_at = T0
        session.delete(session.get(File, file_id))
    with sessions() as session:
        figure = session.get(Figure, figure_id)
        assert (figure.file_id, figure.deleted_at) == (None, T0)


def test_deleting_a_figure_or_cluster_clears_references_to_it(sessions: sessionmaker[Session], seed) -> None:
    dataset_id = seed.dataset()
    cluster_id = seed.cluster(dataset_id)
    cover_id = seed.figure(dataset_id, None, 1, cluster_id=cluster_id, cluster_state="clustered")
    other_id = seed.figure(dataset_id, None, 2, cluster_id=cluster_id, pinned_cluster_id=cluster_id)
    with sessions.begin() as session:
        session.get(FigureCluster, cluster_id).cover_figure_id = cover_id
    with sessions.begin() as session:
        session.delete(session.get(Figure, cover_id))
    with sessions.begin() as session:
        assert session.get(FigureCluster, cluster_id).cover_figure_id is None
        session.delete(session.get(FigureCluster, cluster_id))
    with sessions() as session:
        other = session.get(Figure, other_id)
        assert (other.cluster_id, other.pinned_cluster_id) == (None, None)


def test_timestamps_come_back_as_aware_utc(sessions: sessionmaker[Session], seed) -> None:
    beijing = timezone(timedelta(hours=8))
    local = datetime(2022, 1, 14, 10, 10, 52, 839480, tzinfo=beijing)
    dataset_id = seed.dataset()
    with sessions.begin() as session:
        session.add(File(dataset_id=dataset_id, uri="oss://b/1.jpg", file_modified_at=local))
    with sessions() as session:
        file = session.scalars(select(File)).one()
        for value in (file.file_modified_at, file.created_at, file.updated_at):
            assert value.utcoffset() == timedelta(0)
        assert file.file_modified_at == local
        assert file.file_modified_at.hour == 2  # the same instant, in UTC


def test_timestamps_ignore_the_session_time_zone(database_url: str, engine: Engine, seed) -> None:
    """A PostgreSQL session in another zone still hands back UTC (SQLite has no session zone)."""
    dataset_id = seed.dataset()
    seed.file(dataset_id, "oss://b/1.jpg")
    options = (
        {"connect_args": {"options": "-c timezone=Asia/Shanghai"}}
        if engine.dialect.name == "postgresql"
        else {}
    )
    other = make_engine(database_url, **options)
    try:
        with session_factory(other).begin() as session:
            file = session.scalars(select(File)).one()
            file.file_modified_at = T0
        with session_factory(other)() as session:
            assert session.scalars(select(File)).one().file_modified_at.tzinfo == UTC
        with session_factory(engine)() as session:
            assert session.scalars(select(File)).one().file_modified_at == T0
    finally:
        other.dispose()


def test_naive_datetimes_are_refused(sessions: sessionmaker[Session], seed) -> None:
    dataset_id = seed.dataset()
    with sessions() as session:
        session.add(File(dataset_id=dataset_id, uri="oss://b/1.jpg", file_modified_at=datetime(2022, 1, 1)))
        with pytest.raises(StatementError, match="naive datetime"):
            session.commit()


def test_json_columns_keep_types_and_unicode(sessions: sessionmaker[Session], seed) -> None:
    dataset_id = seed.dataset()
    labels = {
        "int": 1,
        "float": 0.5,
        "bool": False,
        "null": None,
        "list": [1, "a"],
        "名前": "李雷",
        "emoji": "🙂",
    }
    with sessions.begin() as session:
        session.add(FigureCluster(dataset_id=dataset_id, custom_labels=labels))
    with sessions() as session:
        assert session.scalars(select(FigureCluster)).one().custom_labels == labels


def test_json_tags_can_be_matched_in_sql(sessions: sessionmaker[Session], seed) -> None:
    """What ListTasks' TagSelector needs: match a key's value inside the JSON column on both backends."""
    dataset_id = seed.dataset()
    with sessions.begin() as session:
        project_id = session.get(Dataset, dataset_id).project_id
        for i, env in enumerate(["test", "prod", "test"]):
            session.add(
                Task(
                    task_id=f"t{i}", event_id=f"e{i}", project_id=project_id, task_type="X", tags={"env": env}
                )
            )
    with sessions() as session:
        matched = session.scalars(select(Task.task_id).where(Task.tags["env"].as_string() == "test")).all()
        assert sorted(matched) == ["t0", "t2"]
