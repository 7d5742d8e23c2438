"""RAM-style policies: the evaluation rules (pure), then allow/deny per action and resource on the live server."""

from __future__ import annotations

import re

import pytest
from alibabacloud_imm20200930 import models
from live_immray import LiveImmray, sdk_error, unique

from immray.policy import (
    ADMIN_POLICY,
    Decision,
    Glob,
    PolicyError,
    allow,
    dataset_path,
    dataset_policy,
    deny,
    document,
    parse_policy,
    project_path,
    project_policy,
)

P, D = "photos", "family"


# --- the rules ---------------------------------------------------------------------------------------


def test_no_matching_allow_is_refused_and_deny_wins():
    policy = parse_policy(
        document(allow("imm:*", "*"), deny("imm:DeleteDataset", f"acs:imm:*:*:{dataset_path(P, D)}"))
    )
    assert policy.decide("GetDataset", dataset_path(P, D)) is Decision.ALLOW
    assert policy.decide("DeleteDataset", dataset_path(P, D)) is Decision.DENY
    assert policy.decide("DeleteDataset", dataset_path(P, "other")) is Decision.ALLOW
    nothing = parse_policy(document(allow("imm:GetProject", "*")))
    assert nothing.decide("ListProjects", "*") is Decision.NO_MATCH


def test_action_patterns_are_case_insensitive_wildcards():
    policy = parse_policy(document(allow(["imm:Get*", "IMM:listdatasets"], "*")))
    assert policy.allows("GetProject", project_path(P)) and policy.allows("GetDataset", dataset_path(P, D))
    assert policy.allows("ListDatasets", project_path(P))
    assert not policy.allows("CreateDataset", dataset_path(P, D))
    assert parse_policy(document(allow("*", "*"))).allows("DeleteProject", project_path(P))


def test_resource_patterns():
    policy = parse_policy(
        document(allow("imm:*", ["acs:imm:*:*:project/photos", "acs:imm:*:*:project/a?c/dataset/*"]))
    )
    assert policy.allows("GetProject", project_path("photos"))
    # a project's ARN does not cover its datasets, nor does it cover a longer name
    assert not policy.allows("GetDataset", dataset_path("photos", D))
    assert not policy.allows("GetProject", project_path("photos2"))
    assert policy.allows("GetDataset", dataset_path("abc", "x")) and not policy.allows(
        "GetDataset", dataset_path("abbc", "x")
    )
    assert not policy.allows("GetProject", project_path("Photos"))  # resources are case-sensitive
    # region and account fields are anything on a self-hosted server
    regional = parse_policy(document(allow("imm:*", "acs:imm:cn-hangzhou:123456:project/photos/*")))
    assert regional.allows("GetDataset", dataset_path("photos", D))
    assert not regional.allows("GetProject", project_path("photos"))


def test_presets():
    project = parse_policy(project_policy(P))
    assert project.allows("DeleteProject", project_path(P)) and project.allows(
        "DeleteDataset", dataset_path(P, D)
    )
    assert not project.allows("GetProject", project_path("other"))
    dataset = parse_policy(dataset_policy(P, D))
    assert dataset.allows("DeleteDataset", dataset_path(P, D)) and dataset.allows(
        "GetProject", project_path(P)
    )
    assert not dataset.allows("UpdateProject", project_path(P))
    assert not dataset.allows("GetDataset", dataset_path(P, "other"))
    assert parse_policy(ADMIN_POLICY).allows("ListProjects", "*")


def test_listings_see_what_lies_below():
    policy = parse_policy(dataset_policy(P, D))
    assert policy.may_list("ListProjects", "*") and policy.may_list("ListDatasets", project_path(P))
    assert not policy.may_list("ListDatasets", project_path("other"))
    assert policy.shows("ListProjects", "*", project_path(P)) and not policy.shows(
        "ListProjects", "*", project_path("x")
    )
    assert policy.shows("ListDatasets", project_path(P), dataset_path(P, D))
    assert not policy.shows("ListDatasets", project_path(P), dataset_path(P, "other"))
    hidden = parse_policy(
        document(allow("imm:*", "*"), deny("imm:ListProjects", "acs:imm:*:*:project/secret*"))
    )
    assert hidden.denies_any("ListProjects") and hidden.may_list("ListProjects", "*")
    assert not hidden.shows("ListProjects", "*", project_path("secret1"))
    assert hidden.shows("ListProjects", "*", project_path("public"))
    refused = parse_policy(document(allow("imm:*", "*"), deny("imm:List*", "*")))
    assert not refused.may_list("ListProjects", "*")


def test_glob_prefix_viability():
    assert Glob("project/P/dataset/*").matches_something_under("project/P/")
    assert not Glob("project/P/dataset/*").matches_something_under("project/Q/")
    assert Glob("project/*").matches_something_under("project/any/")
    assert not Glob("project/P").matches_something_under("project/P/")
    assert Glob("project/P?/dataset/D").matches_something_under("project/PX/")


@pytest.mark.parametrize(
    ("value", "complaint"),
    [
        ("{not json", "not valid JSON"),
        ([], "JSON object"),
        ({"Statement": []}, "non-empty Statement"),
        ({"Version": "2", "Statement": [allow("imm:*", "*")]}, "Version"),
        ({"Statement": [allow("imm:*", "*")], "Id": "x"}, "unknown policy field"),
        (document({**allow("imm:*", "*"), "Condition": {"IpAddress": {}}}), "Condition not supported"),
        (document({**allow("imm:*", "*"), "Effect": "allow"}), "Allow or Deny"),
        (document(allow("oss:GetObject", "*")), "imm:<Action>"),
        (document(allow("imm:*", "acs:oss:*:*:bucket")), "acs:imm:*:*:<path>"),
        (document(allow("imm:*", "project/P")), "acs:imm:*:*:<path>"),
        (document(allow([], "*")), "non-empty"),
        (document({"Effect": "Allow", "Action": "imm:*"}), "Resource"),
    ],
)
def test_documents_immray_cannot_apply_are_refused(value, complaint):
    with pytest.raises(PolicyError, match=re.escape(complaint)):
        parse_policy(value)


# --- on the live server --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def world(immray: LiveImmray) -> dict[str, str]:
    """Two projects with two datasets each, made by the admin key."""
    client = immray.client()
    names = {"p": unique("pol"), "q": unique("pol")}
    for project in names.values():
        client.create_project(models.CreateProjectRequest(project_name=project))
        for dataset in ("d1", "d2"):
            client.create_dataset(models.CreateDatasetRequest(project_name=project, dataset_name=dataset))
    return names


def test_a_dataset_key_reaches_its_dataset_only(immray: LiveImmray, world):
    p, q = world["p"], world["q"]
    client = immray.client(immray.new_key(dataset_policy(p, "d1")))
    assert client.get_dataset(models.GetDatasetRequest(project_name=p, dataset_name="d1")).body.dataset
    client.update_dataset(models.UpdateDatasetRequest(project_name=p, dataset_name="d1", description="mine"))
    assert client.get_project(models.GetProjectRequest(project_name=p)).body.project.project_name == p
    for call in (
        lambda: client.get_dataset(models.GetDatasetRequest(project_name=p, dataset_name="d2")),
        lambda: client.get_dataset(models.GetDatasetRequest(project_name=q, dataset_name="d1")),
        lambda: client.update_project(models.UpdateProjectRequest(project_name=p, description="no")),
        lambda: client.delete_project(models.DeleteProjectRequest(project_name=p)),
        lambda: client.create_project(models.CreateProjectRequest(project_name=unique("new"))),
        lambda: client.create_dataset(models.CreateDatasetRequest(project_name=p, dataset_name="d3")),
    ):
        error = sdk_error(call)
        assert (error.code, error.status_code) == ("Forbidden", 403)
    error = sdk_error(
        lambda: client.delete_dataset(models.DeleteDatasetRequest(project_name=p, dataset_name="d2"))
    )
    assert f"acs:imm:*:*:project/{p}/dataset/d2" in error.message and "DeleteDataset" in error.message


def test_policy_is_judged_before_existence(immray: LiveImmray, world):
    """A key that may not touch a project learns nothing about it: Forbidden, never ResourceNotFound."""
    client = immray.client(immray.new_key(dataset_policy(world["p"], "d1")))
    for project in (world["q"], unique("ghost")):
        error = sdk_error(
            lambda project=project: client.get_project(models.GetProjectRequest(project_name=project))
        )
        assert error.code == "Forbidden"


def test_deny_wins_per_action(immray: LiveImmray, world):
    p = world["p"]
    key = immray.new_key(document(allow("imm:*", "*"), deny(["imm:Delete*", "imm:Update*"], "*")))
    client = immray.client(key)
    assert client.get_project(models.GetProjectRequest(project_name=p)).body.project
    scratch = unique("scratch")
    client.create_project(models.CreateProjectRequest(project_name=scratch))
    for call in (
        lambda: client.delete_project(models.DeleteProjectRequest(project_name=scratch)),
        lambda: client.update_dataset(models.UpdateDatasetRequest(project_name=p, dataset_name="d1")),
    ):
        assert sdk_error(call).code == "Forbidden"


def test_read_only_key(immray: LiveImmray, world):
    client = immray.client(immray.new_key(document(allow(["imm:Get*", "imm:List*"], "*"))))
    listed = client.list_projects(models.ListProjectsRequest(prefix=world["p"])).body.projects
    assert [p.project_name for p in listed] == [world["p"]]
    assert client.get_dataset(
        models.GetDatasetRequest(project_name=world["q"], dataset_name="d2")
    ).body.dataset
    error = sdk_error(lambda: client.create_project(models.CreateProjectRequest(project_name=unique("ro"))))
    assert (error.code, error.status_code) == ("Forbidden", 403)


def test_listings_show_only_what_the_key_may_reach(immray: LiveImmray, world):
    p, q = world["p"], world["q"]
    client = immray.client(immray.new_key(dataset_policy(p, "d2")))
    projects = client.list_projects(models.ListProjectsRequest(max_results=1)).body
    assert [x.project_name for x in projects.projects] == [p] and not projects.next_token
    datasets = client.list_datasets(models.ListDatasetsRequest(project_name=p)).body.datasets
    assert [d.dataset_name for d in datasets] == ["d2"]
    error = sdk_error(lambda: client.list_datasets(models.ListDatasetsRequest(project_name=q)))
    assert (error.code, error.status_code) == ("Forbidden", 403)

    both = immray.client(
        immray.new_key(document(*project_policy(p)["Statement"], *project_policy(q)["Statement"]))
    )
    seen, token = [], None
    while True:  # filtered pages still page: one project per page, tokens in between
        body = both.list_projects(models.ListProjectsRequest(max_results=1, next_token=token)).body
        seen += [x.project_name for x in body.projects]
        token = body.next_token
        if not token:
            break
    assert seen == sorted([p, q])

    hiding = immray.client(
        immray.new_key(
            document(allow("imm:*", "*"), deny("imm:ListDatasets", f"acs:imm:*:*:project/{p}/dataset/d1"))
        )
    )
    datasets = hiding.list_datasets(models.ListDatasetsRequest(project_name=p)).body.datasets
    assert [d.dataset_name for d in datasets] == ["d2"]


def test_a_listing_can_be_refused_outright(immray: LiveImmray, world):
    client = immray.client(immray.new_key(document(allow("imm:GetProject", "*"))))
    error = sdk_error(lambda: client.list_projects(models.ListProjectsRequest()))
    assert (error.code, error.status_code) == ("Forbidden", 403) and "ListProjects" in error.message
