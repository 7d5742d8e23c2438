"""Projects through the official SDK against the live server, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import datetime

import pytest
from alibabacloud_imm20200930 import models
from live_immray import LiveImmray, sdk_error, unique

from immray.store import Dataset, File, Project


def rfc3339(text: str) -> datetime:
    assert text.endswith("Z") and "T" in text, text
    return datetime.fromisoformat(text)


def create(immray: LiveImmray, name: str, **fields) -> models.Project:
    request = models.CreateProjectRequest(project_name=name, **fields)
    return immray.client().create_project(request).body.project


def test_project_life_cycle(immray: LiveImmray):
    client = immray.client()
    name = unique("life")
    created = create(
        immray,
        name,
        description="family photos",
        tag=[models.CreateProjectRequestTag(key="owner", value="ann")],
        dataset_max_bind_count=4,
    )
    assert created.project_name == name and created.description == "family photos"
    assert [(t.tag_key, t.tag_value) for t in created.tags] == [("owner", "ann")]
    # IMM's defaults, shown as the values in force
    assert created.service_role == "AliyunIMMDefaultRole"
    assert created.project_max_dataset_count == 1_000_000_000
    assert (created.dataset_max_bind_count, created.dataset_max_file_count) == (4, 100_000_000)
    assert (created.engine_concurrency, created.project_queries_per_second) == (100, 100)
    assert created.create_time == created.update_time
    assert created.dataset_count is None  # statistics only when asked for

    got = client.get_project(models.GetProjectRequest(project_name=name)).body.project
    assert got.to_map() == created.to_map()

    updated = client.update_project(
        models.UpdateProjectRequest(
            project_name=name,
            description="all photos",
            tag=[models.UpdateProjectRequestTag(key="team", value="x")],
        )
    ).body.project
    assert updated.description == "all photos"
    assert [(t.tag_key, t.tag_value) for t in updated.tags] == [("team", "x")]  # Tag replaces the tags
    assert updated.dataset_max_bind_count == 4  # what was not given stays
    assert updated.create_time == created.create_time
    assert rfc3339(updated.update_time) > rfc3339(created.update_time)

    client.delete_project(models.DeleteProjectRequest(project_name=name))
    error = sdk_error(lambda: client.get_project(models.GetProjectRequest(project_name=name)))
    assert (error.code, error.status_code) == ("ResourceNotFound", 404)
    assert name in error.message


def test_the_response_keys_are_the_sdk_models(immray: LiveImmray):
    """Every key the server sends is one the SDK's Project model reads (a stray key would be dropped)."""
    name = unique("keys")
    create(immray, name, tag=[models.CreateProjectRequestTag(key="k", value="v")])
    sent = immray.call("GetProject", {"ProjectName": name, "WithStatistics": "true"})["Project"]
    known = set(models.Project().from_map(sent).to_map())
    assert set(sent) == known
    assert sent["Tags"] == [{"TagKey": "k", "TagValue": "v"}]


def test_a_second_create_is_resource_already_exists(immray: LiveImmray):
    name = unique("twice")
    create(immray, name)
    error = sdk_error(lambda: create(immray, name))
    assert (error.code, error.status_code) == ("ResourceAlreadyExists", 409)
    assert name in error.message


@pytest.mark.parametrize("name", ["1photos", "pho.tos", "pho tos", "-x", "é", "x" * 129])
def test_names_follow_imm_rules(immray: LiveImmray, name: str):
    error = sdk_error(lambda: create(immray, name))
    assert (error.code, error.status_code) == ("InvalidArgument", 400)
    assert "ProjectName" in error.message


def test_longest_and_underscore_names_are_fine(immray: LiveImmray):
    longest = (unique("L") + "x" * 128)[:128]
    assert len(longest) == 128
    assert create(immray, longest).project_name == longest
    assert create(immray, "_" + unique()).project_name.startswith("_")


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"description": "d" * 257}, "Description"),
        ({"dataset_max_bind_count": 11}, "DatasetMaxBindCount"),
        ({"dataset_max_bind_count": 0}, "DatasetMaxBindCount"),
        ({"dataset_max_file_count": 100_000_001}, "DatasetMaxFileCount"),
        ({"project_max_dataset_count": 0}, "ProjectMaxDatasetCount"),
        ({"tag": [models.CreateProjectRequestTag(key="k" * 129, value="v")]}, "Tag"),
        (
            {
                "tag": [
                    models.CreateProjectRequestTag(key="k", value="a"),
                    models.CreateProjectRequestTag(key="k"),
                ]
            },
            "k",
        ),
    ],
)
def test_field_limits(immray: LiveImmray, fields: dict, named: str):
    error = sdk_error(lambda: create(immray, unique("limits"), **fields))
    assert (error.code, error.status_code) == ("InvalidArgument", 400)
    assert named in error.message


def test_too_many_tags_and_bad_json(immray: LiveImmray):
    tags = [models.CreateProjectRequestTag(key=f"k{i}", value="v") for i in range(21)]
    error = sdk_error(lambda: create(immray, unique("tags"), tag=tags))
    assert (error.code, error.status_code) == ("LimitExceeded", 400)
    error = sdk_error(
        lambda: immray.call("CreateProject", {"ProjectName": unique("json"), "Tag": '[{"Key":'})
    )
    assert (error.code, error.status_code) == ("InvalidJSON", 400) and "Tag" in error.message
    error = sdk_error(
        lambda: immray.call("CreateProject", {"ProjectName": unique("shape"), "Tag": '[{"Key": 1}]'})
    )
    assert (error.code, error.status_code) == ("InvalidArgument", 400)


def test_list_pages_by_name_with_prefix(immray: LiveImmray):
    client = immray.client()
    prefix = unique("page") + "_"
    names = sorted(f"{prefix}{suffix}" for suffix in ["b", "a", "C", "_z", "a1", "a0", "B2"])
    for name in names:
        create(immray, name)
    create(immray, unique("other"))

    seen, token, sizes = [], None, []
    while True:
        body = client.list_projects(
            models.ListProjectsRequest(prefix=prefix, max_results=3, next_token=token)
        ).body
        sizes.append(len(body.projects))
        seen += [project.project_name for project in body.projects]
        token = body.next_token
        if not token:
            break
    assert seen == names  # code-point order, each once
    assert sizes == [3, 3, 1]

    everything = client.list_projects(models.ListProjectsRequest(prefix=prefix, max_results=0)).body
    assert [p.project_name for p in everything.projects] == names and not everything.next_token
    assert client.list_projects(models.ListProjectsRequest(prefix=prefix + "zzz")).body.projects == []


def test_list_filters_by_tags(immray: LiveImmray):
    prefix = unique("tagged") + "_"
    create(immray, prefix + "a", tag=[models.CreateProjectRequestTag(key="env", value="prod")])
    create(immray, prefix + "b", tag=[models.CreateProjectRequestTag(key="env", value="test")])
    create(immray, prefix + "c")
    request = models.ListProjectsRequest(
        prefix=prefix, tag=[models.ListProjectsRequestTag(key="env", value="prod")]
    )
    found = immray.client().list_projects(request).body.projects
    assert [p.project_name for p in found] == [prefix + "a"]


def test_list_paging_errors(immray: LiveImmray):
    client = immray.client()
    error = sdk_error(lambda: client.list_projects(models.ListProjectsRequest(max_results=201)))
    assert error.code == "InvalidArgument" and "MaxResults" in error.message
    error = sdk_error(lambda: client.list_projects(models.ListProjectsRequest(next_token="not-a-token")))
    assert error.code == "InvalidArgument" and "NextToken" in error.message
    error = sdk_error(lambda: client.list_projects(models.ListProjectsRequest(prefix="p" * 129)))
    assert error.code == "InvalidArgument" and "Prefix" in error.message


def test_a_project_with_datasets_cannot_be_deleted(immray: LiveImmray):
    client = immray.client()
    name = unique("full")
    create(immray, name)
    for dataset in ("d1", "d2", "d3"):
        client.create_dataset(models.CreateDatasetRequest(project_name=name, dataset_name=dataset))
    error = sdk_error(lambda: client.delete_project(models.DeleteProjectRequest(project_name=name)))
    assert (error.code, error.status_code) == ("OperationConflict", 409)
    assert "3 dataset(s)" in error.message and "d1, d2, d3" in error.message
    for dataset in ("d1", "d2", "d3"):
        client.delete_dataset(models.DeleteDatasetRequest(project_name=name, dataset_name=dataset))
    client.delete_project(models.DeleteProjectRequest(project_name=name))


def test_missing_projects_are_resource_not_found(immray: LiveImmray):
    client = immray.client()
    name = unique("ghost")
    for call in (
        lambda: client.update_project(models.UpdateProjectRequest(project_name=name, description="x")),
        lambda: client.delete_project(models.DeleteProjectRequest(project_name=name)),
        lambda: client.list_datasets(models.ListDatasetsRequest(project_name=name)),
    ):
        error = sdk_error(call)
        assert (error.code, error.status_code) == ("ResourceNotFound", 404)


def test_statistics_count_datasets_files_and_bytes(immray: LiveImmray):
    client = immray.client()
    name = unique("stats")
    create(immray, name)
    for dataset in ("a", "b"):
        client.create_dataset(models.CreateDatasetRequest(project_name=name, dataset_name=dataset))
    with immray.db.write() as session:
        project = session.query(Project).filter_by(name=name).one()
        a, b = (session.query(Dataset).filter_by(project_id=project.id, name=n).one() for n in ("a", "b"))
        session.add_all(
            [
                File(dataset_id=a.id, uri="oss://b/1.jpg", size=1000),
                File(dataset_id=a.id, uri="oss://b/2.jpg", size=234),
                File(dataset_id=b.id, uri="oss://b/3.jpg", size=None),  # not read yet: no size
            ]
        )
    project = client.get_project(
        models.GetProjectRequest(project_name=name, with_statistics=True)
    ).body.project
    assert (project.dataset_count, project.file_count, project.total_file_size) == (2, 3, 1234)
