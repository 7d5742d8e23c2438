"""Datasets through the official SDK against the live server, on SQLite and PostgreSQL."""

from __future__ import annotations

import numpy as np
import pytest
from alibabacloud_imm20200930 import models
from live_immray import LiveImmray, sdk_error, unique
from sqlalchemy import func, select

from immray.store import (
    Binding,
    ClusteringState,
    Dataset,
    Figure,
    FigureCluster,
    File,
    Task,
    new_task_id,
)

MIN_FACES = "FigureClusterMinFaces"


@pytest.fixture
def project(immray: LiveImmray) -> str:
    name = unique("proj")
    immray.client().create_project(models.CreateProjectRequest(project_name=name, dataset_max_bind_count=5))
    return name


def create(immray: LiveImmray, project: str, name: str, **fields) -> models.Dataset:
    request = models.CreateDatasetRequest(project_name=project, dataset_name=name, **fields)
    return immray.client().create_dataset(request).body.dataset


def params(dataset: models.Dataset) -> dict[str, str]:
    return {p.name: p.value for p in dataset.workflow_parameters if p.name == MIN_FACES}


def test_dataset_life_cycle(immray: LiveImmray, project: str):
    client = immray.client()
    created = create(immray, project, "family", description="at home")
    assert (created.project_name, created.dataset_name, created.description) == (project, "family", "at home")
    assert created.dataset_max_bind_count == 5  # the project's default for its datasets
    assert created.dataset_max_file_count == 100_000_000
    assert params(created) == {MIN_FACES: "3"}  # defaults in force are shown
    assert created.create_time == created.update_time and created.create_time.endswith("Z")

    got = client.get_dataset(
        models.GetDatasetRequest(project_name=project, dataset_name="family")
    ).body.dataset
    assert got.to_map() == created.to_map()

    updated = client.update_dataset(
        models.UpdateDatasetRequest(
            project_name=project,
            dataset_name="family",
            description="everywhere",
            dataset_max_bind_count=2,
            workflow_parameters=[models.WorkflowParameter(name=MIN_FACES, value="5")],
        )
    ).body.dataset
    assert (updated.description, updated.dataset_max_bind_count, params(updated)) == (
        "everywhere",
        2,
        {MIN_FACES: "5"},
    )
    assert updated.update_time > created.update_time and updated.create_time == created.create_time

    # an update without WorkflowParameters keeps them; an empty list resets them to the defaults
    kept = client.update_dataset(
        models.UpdateDatasetRequest(project_name=project, dataset_name="family", description="again")
    ).body.dataset
    assert params(kept) == {MIN_FACES: "5"} and kept.dataset_max_bind_count == 2
    reset = client.update_dataset(
        models.UpdateDatasetRequest(project_name=project, dataset_name="family", workflow_parameters=[])
    ).body.dataset
    assert params(reset) == {MIN_FACES: "3"}

    client.delete_dataset(models.DeleteDatasetRequest(project_name=project, dataset_name="family"))
    error = sdk_error(
        lambda: client.get_dataset(models.GetDatasetRequest(project_name=project, dataset_name="family"))
    )
    assert (error.code, error.status_code) == ("ResourceNotFound", 404)
    assert f"{project}/family" in error.message


def test_the_response_keys_are_the_sdk_models(immray: LiveImmray, project: str):
    create(immray, project, "d")
    sent = immray.call("GetDataset", {"ProjectName": project, "DatasetName": "d", "WithStatistics": "True"})[
        "Dataset"
    ]
    assert set(sent) == set(models.Dataset().from_map(sent).to_map())
    assert {"BindCount", "FileCount", "TotalFileSize", "WorkflowParameters"} <= set(sent)


def test_workflow_parameters_set_at_creation(immray: LiveImmray, project: str):
    created = create(
        immray, project, "two", workflow_parameters=[models.WorkflowParameter(name=MIN_FACES, value="2")]
    )
    assert params(created) == {MIN_FACES: "2"}


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ('[{"Name":"NoSuchKnob","Value":"1"}]', "unknown name 'NoSuchKnob'"),
        ('[{"Name":"FigureClusterMinFaces","Value":"0"}]', "from 1 to 100"),
        ('[{"Name":"FigureClusterMinFaces","Value":"101"}]', "from 1 to 100"),
        ('[{"Name":"FigureClusterMinFaces","Value":"three"}]', "from 1 to 100"),
        (
            '[{"Name":"FaceDetectionMode","Value":"hog"}]',
            "FaceDetectionMode must be one of default, accurate, fast, not 'hog'",
        ),
        (
            '[{"Name":"FigureClusterMinFaces","Value":"2"},{"Name":"FigureClusterMinFaces","Value":"4"}]',
            "more than once",
        ),
        ('[{"Name":"FigureClusterMinFaces"}]', "needs a Value"),
        ('[{"Value":"3"}]', "has no Name"),
        ('[{"Name":"FigureClusterMinFaces","Value":"3","Extra":1}]', "Name and Value"),
    ],
)
def test_bad_workflow_parameters_are_invalid_argument(immray: LiveImmray, project: str, value, message):
    for action in ("CreateDataset", "UpdateDataset"):
        query = {"ProjectName": project, "DatasetName": "wp", "WorkflowParameters": value}
        error = sdk_error(lambda action=action, query=query: immray.call(action, query))
        assert (error.code, error.status_code) == ("InvalidArgument", 400)
        assert message in error.message
        if action == "CreateDataset":
            create(immray, project, "wp")  # for the update round: a dataset that exists


def test_bad_workflow_parameters_through_the_sdk(immray: LiveImmray, project: str):
    error = sdk_error(
        lambda: create(
            immray, project, "x", workflow_parameters=[models.WorkflowParameter(name="Bogus", value="1")]
        )
    )
    assert (
        error.code == "InvalidArgument" and "FigureClusterMinFaces" in error.message
    )  # names the known ones
    query = {"ProjectName": project, "DatasetName": "x", "WorkflowParameters": "[{"}
    error = sdk_error(lambda: immray.call("CreateDataset", query))
    assert (error.code, error.status_code) == ("InvalidJSON", 400) and "WorkflowParameters" in error.message


def test_already_exists_and_not_found(immray: LiveImmray, project: str):
    client = immray.client()
    create(immray, project, "once")
    error = sdk_error(lambda: create(immray, project, "once"))
    assert (error.code, error.status_code) == ("ResourceAlreadyExists", 409)
    ghost = unique("ghost")
    error = sdk_error(lambda: create(immray, ghost, "d"))
    assert (error.code, error.status_code) == (
        "ResourceNotFound",
        404,
    ) and f"project {ghost}" in error.message
    for call in (
        lambda: client.update_dataset(models.UpdateDatasetRequest(project_name=project, dataset_name="no")),
        lambda: client.delete_dataset(models.DeleteDatasetRequest(project_name=project, dataset_name="no")),
        lambda: client.get_dataset(models.GetDatasetRequest(project_name=ghost, dataset_name="no")),
    ):
        error = sdk_error(call)
        assert (error.code, error.status_code) == ("ResourceNotFound", 404)


def test_same_dataset_name_in_two_projects(immray: LiveImmray, project: str):
    other = unique("proj")
    immray.client().create_project(models.CreateProjectRequest(project_name=other))
    assert create(immray, project, "same").project_name == project
    assert create(immray, other, "same").project_name == other


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"dataset_name": "9lives"}, "DatasetName"),
        ({"dataset_name": "a/b"}, "DatasetName"),
        ({"dataset_name": "d", "description": "x" * 257}, "Description"),
        ({"dataset_name": "d", "dataset_max_bind_count": 11}, "DatasetMaxBindCount"),
        ({"dataset_name": "d", "dataset_max_total_file_size": -1}, "DatasetMaxTotalFileSize"),
    ],
)
def test_dataset_field_rules(immray: LiveImmray, project: str, fields: dict, named: str):
    request = models.CreateDatasetRequest(project_name=project, **fields)
    error = sdk_error(lambda: immray.client().create_dataset(request))
    assert (error.code, error.status_code) == ("InvalidArgument", 400) and named in error.message


def test_project_max_dataset_count_is_a_limit(immray: LiveImmray):
    name = unique("small")
    immray.client().create_project(
        models.CreateProjectRequest(project_name=name, project_max_dataset_count=2)
    )
    create(immray, name, "a")
    create(immray, name, "b")
    error = sdk_error(lambda: create(immray, name, "c"))
    assert (error.code, error.status_code) == (
        "LimitExceeded",
        400,
    ) and "ProjectMaxDatasetCount" in error.message


def test_list_pages_with_prefix(immray: LiveImmray, project: str):
    client = immray.client()
    names = sorted(["a1", "a2", "a10", "b", "A", "a_x"])
    for name in names:
        create(immray, project, name)
    pages, token = [], None
    while True:
        body = client.list_datasets(
            models.ListDatasetsRequest(project_name=project, prefix="a", max_results=2, next_token=token)
        ).body
        pages.append([d.dataset_name for d in body.datasets])
        token = body.next_token
        if not token:
            break
    assert pages == [["a1", "a10"], ["a2", "a_x"]]  # case-sensitive prefix, code-point order
    everything = client.list_datasets(models.ListDatasetsRequest(project_name=project)).body
    assert [d.dataset_name for d in everything.datasets] == names and not everything.next_token
    assert {p.value for d in everything.datasets for p in d.workflow_parameters if p.name == MIN_FACES} == {
        "3"
    }
    error = sdk_error(
        lambda: client.list_datasets(models.ListDatasetsRequest(project_name=project, max_results=-1))
    )
    assert error.code == "InvalidArgument"


def _figure(dataset_id: int, file_id: int, seed: int, **values) -> Figure:
    figure = Figure(dataset_id=dataset_id, file_id=file_id, left=1, top=2, width=80, height=90, **values)
    figure.set_vector(np.random.default_rng(seed).standard_normal(128), model="test")
    return figure


def _fill(session, dataset_id: int, project_id: int) -> None:
    """Files, faces, a cluster with a cover, clustering state, a binding and a task, as indexing leaves them."""
    file = File(dataset_id=dataset_id, uri="file:///photos/a.jpg", size=2048)
    cluster = FigureCluster(dataset_id=dataset_id, face_count=2, image_count=1)
    session.add_all([file, cluster])
    session.flush()
    faces = [
        _figure(dataset_id, file.id, seed, cluster_id=cluster.id, cluster_state="clustered")
        for seed in (1, 2)
    ]
    session.add_all(faces)
    session.flush()
    cluster.cover_figure_id = faces[0].id
    session.add_all(
        [
            ClusteringState(dataset_id=dataset_id, state=b"state", embedding_model="test", embedding_dim=128),
            Binding(dataset_id=dataset_id, uri="file:///photos/"),
            Task(
                task_id=new_task_id("FaceClustering"),
                project_id=project_id,
                dataset_id=dataset_id,
                task_type="FaceClustering",
                event_id=unique("event"),
            ),
        ]
    )


def _counts(session, dataset_id: int) -> dict[str, int]:
    return {
        model.__name__: session.scalar(
            select(func.count()).select_from(model).where(model.dataset_id == dataset_id)
        )
        for model in (File, Figure, FigureCluster, ClusteringState, Binding, Task)
    }


def test_statistics_and_deleting_a_dataset_deletes_what_it_holds(immray: LiveImmray, project: str):
    client = immray.client()
    create(immray, project, "gone")
    create(immray, project, "kept")
    with immray.db.write() as session:
        rows = {d.name: d for d in session.scalars(select(Dataset).where(Dataset.name.in_(["gone", "kept"])))}
        rows = {name: row for name, row in rows.items() if row.project.name == project}
        gone, kept = rows["gone"].id, rows["kept"].id
        for dataset_id in (gone, kept):
            _fill(session, dataset_id, rows["gone"].project_id)
    stats = client.get_dataset(
        models.GetDatasetRequest(project_name=project, dataset_name="gone", with_statistics=True)
    ).body.dataset
    assert (stats.file_count, stats.total_file_size, stats.bind_count) == (1, 2048, 1)

    client.delete_dataset(models.DeleteDatasetRequest(project_name=project, dataset_name="gone"))
    with immray.db.read() as session:
        assert set(_counts(session, gone).values()) == {0}
        assert _counts(session, kept) == {
            "File": 1,
            "Figure": 2,
            "FigureCluster": 1,
            "ClusteringState": 1,
            "Binding": 1,
            "Task": 1,
        }
