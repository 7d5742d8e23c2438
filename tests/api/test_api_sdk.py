"""The official IMM SDK against a live immray server: what a user's unchanged code sees."""

from __future__ import annotations

import pytest
from alibabacloud_imm20200930 import models
from alibabacloud_tea_openapi.exceptions import ClientException, ServerException
from harness import ACCESS_KEY_ID, READER_KEY_ID, READER_SECRET, SECRET, Seen, sdk_client


def sdk_error(call, exception=ClientException):
    with pytest.raises(exception) as caught:
        call()
    return caught.value


def test_a_registered_action_round_trips(client, seen: Seen):
    response = client.get_project(models.GetProjectRequest(project_name="p1", with_statistics=True))
    assert response.status_code == 200
    assert response.body.project.project_name == "p1"
    assert response.body.project.description == "statistics=True"
    assert response.body.request_id and response.headers["x-acs-request-id"] == response.body.request_id
    call = seen.calls[-1]
    assert (call.action, call.access_key_id, call.request_id) == (
        "GetProject",
        ACCESS_KEY_ID,
        response.body.request_id,
    )
    assert call.resource.arn == "acs:imm:*:*:project/p1"


def test_the_legacy_signature_round_trips(address: str):
    legacy = sdk_client(address, signature_algorithm="v2")
    response = legacy.get_project(models.GetProjectRequest(project_name="p2"))
    assert response.body.project.project_name == "p2"
    assert response.body.project.description == "statistics=False"


def test_wrong_secret_is_signature_does_not_match(address: str):
    error = sdk_error(
        lambda: sdk_client(address, secret=SECRET + "x").get_project(
            models.GetProjectRequest(project_name="p")
        )
    )
    assert (error.code, error.status_code) == ("SignatureDoesNotMatch", 400)
    assert error.request_id and error.data["HostId"] == "immray"


def test_unknown_access_key(address: str):
    error = sdk_error(
        lambda: sdk_client(address, key_id="nobody").get_project(models.GetProjectRequest(project_name="p"))
    )
    assert (error.code, error.status_code) == ("InvalidAccessKeyId.NotFound", 404)


def test_unsupported_action_is_a_clear_400(client):
    error = sdk_error(
        lambda: client.detect_image_labels(
            models.DetectImageLabelsRequest(project_name="p", source_uri="oss://b/o")
        )
    )
    assert (error.code, error.status_code) == ("UnsupportedAction", 400)
    assert "DetectImageLabels is not supported" in error.message


def test_a_hundred_item_json_parameter(client, seen: Seen):
    ids = [f"Cluster-{i:03d}-{'x' * 30}" for i in range(100)]
    request = models.BatchGetFigureClusterRequest(project_name="p", dataset_name="d", object_ids=ids)
    response = client.batch_get_figure_cluster(request)
    assert [c.object_id for c in response.body.figure_clusters] == ids
    assert seen.calls[-1].params["ObjectIds"] == ids
    request.object_ids = [*ids, "one-too-many"]
    error = sdk_error(lambda: client.batch_get_figure_cluster(request))
    assert (error.code, error.status_code) == ("LimitExceeded", 400) and "ObjectIds" in error.message


def test_a_sixty_kib_request_line_is_accepted(client, seen: Seen):
    files = [
        models.InputFile(uri=f"oss://bucket/{'deep/' * 63}photo_{i:05d}.jpg", custom_id=f"c{i}")
        for i in range(100)
    ]
    request = models.BatchIndexFileMetaRequest(
        project_name="p", dataset_name="d", files=files, user_data="中文 &=+"
    )
    response = client.batch_index_file_meta(request)
    assert response.body.event_id == "files-100"
    received = seen.calls[-1].params
    assert [f["URI"] for f in received["Files"]] == [f.uri for f in files]
    assert received["UserData"] == "中文 &=+"
    assert 56 * 1024 < seen.request_lines[-1] < 64 * 1024


def test_missing_required_parameter_is_named(client):
    error = sdk_error(lambda: client.get_project(models.GetProjectRequest()))
    assert error.code == "InvalidArgument"
    assert "The parameter ProjectName is required but not provided." in error.message


def test_policy_is_checked_before_the_handler(address: str, seen: Seen):
    reader = sdk_client(address, key_id=READER_KEY_ID, secret=READER_SECRET)
    before = len(seen.calls)
    request = models.BatchIndexFileMetaRequest(
        project_name="p", dataset_name="d", files=[models.InputFile(uri="oss://b/a.jpg")]
    )
    error = sdk_error(lambda: reader.batch_index_file_meta(request))
    assert (error.code, error.status_code) == ("Forbidden", 403)
    assert "acs:imm:*:*:project/p/dataset/d" in error.message
    assert len(seen.calls) == before
    assert reader.get_project(models.GetProjectRequest(project_name="p")).body.project.project_name == "p"


def test_a_failing_handler_is_an_internal_error_without_details(client, caplog):
    with caplog.at_level("ERROR", logger="immray.api"):
        error = sdk_error(
            lambda: client.delete_project(models.DeleteProjectRequest(project_name="p")), ServerException
        )
    assert (error.code, error.status_code) == ("InternalError", 500)
    assert "hunter2" not in str(error.data) and "Traceback" not in str(error.data)
    assert error.request_id in error.message
    logged = [r for r in caplog.records if r.name == "immray.api" and error.request_id in r.getMessage()]
    assert logged and "hunter2" in str(logged[0].exc_info[1])


def test_a_lower_case_response_key_is_caught_as_a_bug(client):
    error = sdk_error(
        lambda: client.get_dataset(models.GetDatasetRequest(project_name="p", dataset_name="d")),
        ServerException,
    )
    assert error.code == "InternalError"
