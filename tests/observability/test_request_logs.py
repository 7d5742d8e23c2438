"""A live API (uvicorn in a thread, the official SDK): every line logged while one request is served, in
the handler's thread too, carries that request's id (the response's RequestId) and its action."""

from __future__ import annotations

import logging

import httpx
import pytest
import structlog
from alibabacloud_imm20200930 import models
from alibabacloud_tea_openapi.exceptions import ClientException
from harness import KEYS, sdk_client
from live_server import serve
from observability_testkit import json_lines

from immray.api import ActionRegistry, Call, Scope, create_app
from immray.observability import logs, metrics
from immray.protocol.errors import ImmError


def build_app():
    actions = ActionRegistry()

    @actions.action("GetProject", scope=Scope.PROJECT)
    def get_project(call: Call) -> dict:  # a plain function: the dispatcher runs it in a worker thread
        name = call.params["ProjectName"]
        logging.getLogger("immray.handlers").info("looking up %s", name, extra={"project": name})
        structlog.get_logger("immray.handlers").info("found", project=name)
        if name == "missing":
            raise ImmError.resource_not_found("Project", name)
        return {"Project": {"ProjectName": name}}

    app = create_app(actions, KEYS.get)
    metrics.instrument(app, ["GetProject"])
    return app


@pytest.fixture(scope="module")
def address():
    with serve(build_app()) as address:
        yield address


def lines_of(request_id: str, err: str) -> list[dict]:
    return [line for line in json_lines(err) if line.get("request_id") == request_id]


def test_the_lines_of_a_request_carry_its_id_and_action(address, capsys):
    logs.configure_logging("json")
    response = sdk_client(address).get_project(models.GetProjectRequest(project_name="p1"))
    request_id = response.body.request_id
    assert request_id and response.headers["x-acs-request-id"] == request_id

    mine = lines_of(request_id, capsys.readouterr().err)
    by_message = {line["message"]: line for line in mine}
    assert {"looking up p1", "found", "request handled"} <= set(by_message), mine
    assert all(line["action"] == "GetProject" for line in mine)
    assert by_message["looking up p1"]["project"] == "p1" and by_message["found"]["project"] == "p1"
    handled = by_message["request handled"]
    assert (handled["logger"], handled["level"], handled["status"]) == ("immray.api", "info", 200)
    assert handled["duration_ms"] >= 0 and "code" not in handled


def test_a_refused_request_logs_its_status_and_code(address, capsys):
    logs.configure_logging("json")
    with pytest.raises(ClientException) as caught:
        sdk_client(address).get_project(models.GetProjectRequest(project_name="missing"))
    request_id = caught.value.request_id
    assert request_id

    (handled,) = [
        line for line in lines_of(request_id, capsys.readouterr().err) if line["message"] == "request handled"
    ]
    assert (handled["action"], handled["status"], handled["code"]) == ("GetProject", 404, "ResourceNotFound")


def test_a_bad_signature_is_logged_with_the_action_the_header_named(address, capsys):
    logs.configure_logging("json")
    with pytest.raises(ClientException) as caught:
        sdk_client(address, secret="wrong").get_project(models.GetProjectRequest(project_name="p1"))
    (handled,) = lines_of(caught.value.request_id, capsys.readouterr().err)
    assert (handled["message"], handled["action"], handled["status"], handled["code"]) == (
        "request handled",
        "GetProject",
        400,
        "SignatureDoesNotMatch",
    )


def test_metrics_are_no_longer_served_on_the_api_port(address):
    response = httpx.get(f"http://{address}/metrics", timeout=10)
    assert response.status_code == 410
    assert "Ray" in response.text and "ray_immray_" in response.text
