"""Raw HTTP against a live server: what the SDK never sends, signed by our own ``sign`` helper.

Signature and parameter checks run on the harness's actions under plain uvicorn (``address``); request
heads, response headers and the errors made before the application are checked through Serve's proxy in
front of the whole server (``immray``), which is what users reach."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from alibabacloud_imm20200930 import models
from harness import ACCESS_KEY_ID, KEYS, SECRET, Seen, build_actions
from live_immray import LiveImmray, unique
from live_server import exchange, exchange_raw, serve, signed_head

from immray.api import create_app
from immray.api.bootstrap import build_app
from immray.api.server import MAX_REQUEST_HEAD, MAX_REQUEST_LINE
from immray.protocol.signing import encode_query, sign


def post(address: str, action: str, query: dict[str, str], *, date=None, nonce=None, secret=SECRET, **extra):
    headers = sign(
        access_key_id=ACCESS_KEY_ID,
        secret=secret,
        action=action,
        host=address,
        query=query,
        date=date,
        nonce=nonce,
        extra_headers=extra.pop("extra_headers", None),
    )
    return httpx.post(f"http://{address}/?{encode_query(query)}", headers=headers, **extra)


def assert_imm_error(response: httpx.Response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"RequestId", "HostId", "Code", "Message", "Recommend"}
    assert body["Code"] == code and body["Message"]
    assert response.headers["x-acs-request-id"] == body["RequestId"]
    return body


def test_signed_by_our_helper_round_trips(address: str):
    response = post(address, "GetProject", {"ProjectName": "p9", "WithStatistics": "true"})
    assert response.status_code == 200
    assert response.json()["Project"] == {"ProjectName": "p9", "Description": "statistics=True"}


def test_stale_and_future_dates_are_expired(address: str):
    for skew in (timedelta(minutes=-16), timedelta(minutes=16)):
        response = post(address, "GetProject", {"ProjectName": "p"}, date=datetime.now(UTC) + skew)
        assert "15 minutes" in assert_imm_error(response, 400, "InvalidTimeStamp.Expired")["Message"]


def test_replayed_nonce_is_refused(address: str):
    query = {"ProjectName": "p"}
    headers = sign(access_key_id=ACCESS_KEY_ID, secret=SECRET, action="GetProject", host=address, query=query)
    url = f"http://{address}/?{encode_query(query)}"
    assert httpx.post(url, headers=headers).status_code == 200
    assert_imm_error(httpx.post(url, headers=headers), 400, "SignatureNonceUsed")


def test_no_authorization_is_incomplete_signature(address: str):
    response = httpx.post(f"http://{address}/?ProjectName=p", headers={"x-acs-action": "GetProject"})
    assert "Authorization" in assert_imm_error(response, 400, "IncompleteSignature")["Message"]
    assert_imm_error(httpx.post(f"http://{address}/"), 400, "IncompleteSignature")


def test_bad_json_parameter_is_invalid_json(address: str):
    response = post(
        address, "BatchGetFigureCluster", {"ProjectName": "p", "DatasetName": "d", "ObjectIds": "[1,"}
    )
    body = assert_imm_error(response, 400, "InvalidJSON")
    assert body["Message"] == "Array parsing error, ObjectIds"


def test_a_parameter_given_twice_is_refused(address: str):
    query = [("ProjectName", "p"), ("ProjectName", "q")]
    headers = sign(access_key_id=ACCESS_KEY_ID, secret=SECRET, action="GetProject", host=address, query=query)
    response = httpx.post(f"http://{address}/?{encode_query(query)}", headers=headers)
    assert "given more than once" in assert_imm_error(response, 400, "InvalidArgument")["Message"]


def test_invalid_resource_names_never_reach_policy_or_handler(address: str, seen: Seen):
    before = len(seen.calls)
    for name in ("a/b", "*", "1x", "p" * 129):
        response = post(address, "GetProject", {"ProjectName": name})
        assert "ProjectName" in assert_imm_error(response, 400, "InvalidArgument")["Message"]
    assert len(seen.calls) == before


def test_unknown_version_and_missing_action(address: str):
    response = post(
        address, "GetProject", {"ProjectName": "p"}, extra_headers={"x-acs-version": "2017-09-06"}
    )
    assert "2020-09-30" in assert_imm_error(response, 400, "InvalidArgument")["Message"]
    response = post(address, "", {"ProjectName": "p"})
    assert "no action" in assert_imm_error(response, 400, "InvalidArgument")["Message"]
    response = post(address, "NoSuchThing", {})
    assert "NoSuchThing is not supported" in assert_imm_error(response, 400, "UnsupportedAction")["Message"]


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("GET", "/", 405, "MethodNotAllowed"),
        ("PUT", "/", 405, "MethodNotAllowed"),
        ("POST", "/v1/projects", 404, "InvalidPath"),
        ("GET", "/docs", 404, "InvalidPath"),
    ],
)
def test_wrong_method_or_path_is_json(address: str, method: str, path: str, status: int, code: str):
    response = httpx.request(method, f"http://{address}{path}")
    assert "POST /" in assert_imm_error(response, status, code)["Message"]


def test_a_large_body_is_refused_before_it_is_read(address: str):
    response = post(address, "GetProject", {"ProjectName": "p"}, content=b"x" * (1024 * 1024 + 1))
    assert_imm_error(response, 400, "LimitExceeded")


def test_a_form_body_carries_parameters_and_is_signed(address: str):
    body = encode_query({"ObjectIds": json.dumps(["C1", "C2"])}).encode()
    form = {"content-type": "application/x-www-form-urlencoded"}
    query = {"ProjectName": "p", "DatasetName": "d"}
    headers = sign(
        access_key_id=ACCESS_KEY_ID,
        secret=SECRET,
        action="BatchGetFigureCluster",
        host=address,
        query=query,
        body=body,
        extra_headers=form,
    )
    url = f"http://{address}/?{encode_query(query)}"
    response = httpx.post(url, headers=headers, content=body)
    assert [c["ObjectId"] for c in response.json()["FigureClusters"]] == ["C1", "C2"]
    headers = sign(
        access_key_id=ACCESS_KEY_ID,
        secret=SECRET,
        action="BatchGetFigureCluster",
        host=address,
        query=query,
        body=body,
        extra_headers=form,
    )
    assert_imm_error(
        httpx.post(url, headers=headers, content=body.replace(b"C2", b"C3")), 400, "SignatureDoesNotMatch"
    )


# --- the HTTP layer users reach: Serve's proxy in front of the whole server ------------------------
# (request heads are parsed by the proxy, never by the application, so these run on the ``immray`` server)

IMM_HEADERS = {"date", "x-acs-request-id", "content-type", "content-length", "connection"}


def admin_head(server: LiveImmray, line_length: int, **query: str) -> bytes:
    key = server.admin
    return signed_head(server.address, key.access_key_id, key.secret, line_length, **query)


def test_a_64_kib_request_line_is_accepted_with_the_apis_headers_only(immray: LiveImmray):
    project = unique("line")
    immray.client().create_project(models.CreateProjectRequest(project_name=project))
    head = admin_head(immray, MAX_REQUEST_LINE, ProjectName=project)
    response = exchange(immray.address, [head[:-4], head[-4:]])
    assert response.status == 200, response.body
    assert json.loads(response.body)["Project"]["ProjectName"] == project
    # no `server: uvicorn`, no Serve `x-request-id`: the headers the API itself sends
    assert set(response.headers) == IMM_HEADERS
    assert response.headers["x-acs-request-id"] == json.loads(response.body)["RequestId"]


def test_a_head_over_the_limit_gets_a_json_error(immray: LiveImmray):
    head = admin_head(immray, MAX_REQUEST_HEAD + 1024, ProjectName="p")
    response = exchange(immray.address, [head[:-4]])  # answered before the head is even complete
    assert response.status == 400
    assert response.headers["content-type"] == "application/json"
    body = json.loads(response.body)
    assert body["Code"] == "InvalidRequest" and str(MAX_REQUEST_HEAD) in body["Message"]
    assert response.headers["x-acs-request-id"] == body["RequestId"]


@pytest.mark.parametrize(
    "request_head",
    [b"GARBAGE\r\n\r\n", b"POST / HTTP/1.1\r\nhost: x\r\nno colon here\r\n\r\n"],
    ids=["request-line", "header"],
)
def test_a_malformed_request_gets_a_json_error(immray: LiveImmray, request_head: bytes):
    response = exchange(immray.address, [request_head])
    assert response.status == 400
    body = json.loads(response.body)
    assert body["Code"] == "InvalidRequest" and response.headers["x-acs-request-id"] == body["RequestId"]
    assert "server" not in response.headers


def test_an_error_the_proxy_makes_is_an_imm_error(immray: LiveImmray):
    """Serve answers a request past its timeout itself; the SDK still gets IMM's JSON error."""
    key = immray.admin
    query = {"ProjectName": "p"}
    headers = sign(
        access_key_id=key.access_key_id,
        secret=key.secret,
        action="GetProject",
        host=immray.address,
        query=query,
    )
    # Serve's per-request timeout header; no answer crosses from a replica in a microsecond
    headers["x-request-timeout-seconds"] = "0.000001"
    response = httpx.post(f"http://{immray.address}/?{encode_query(query)}", headers=headers)
    body = assert_imm_error(response, 408, "RequestTimeout")
    assert "x-request-id" not in response.headers and "server" not in response.headers
    assert body["HostId"] == "immray"


def test_the_proxy_answers_byte_for_byte_as_the_plain_server(immray: LiveImmray):
    """The same application under plain uvicorn with ``server_config`` (the server before Serve) gives the
    same bytes as Serve's proxy, but for the date and the request ids."""
    project = unique("same")
    immray.client().create_project(models.CreateProjectRequest(project_name=project))
    plain_app = build_app(immray.settings, db=immray.db, services=lambda context: [])

    def requests(address: str) -> list[list[bytes]]:
        key = immray.admin

        def head(length: int) -> bytes:
            return signed_head(address, key.access_key_id, key.secret, length, ProjectName=project)

        return [
            [head(60 * 1024)],
            [head(MAX_REQUEST_HEAD + 1024)[:-4]],
            [b"GARBAGE\r\n\r\n"],
            [b"GET /docs HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"],
        ]

    through_serve = [_masked(exchange_raw(immray.address, parts)) for parts in requests(immray.address)]
    with serve(plain_app) as plain:
        from_plain = [_masked(exchange_raw(plain, parts)) for parts in requests(plain)]
    assert through_serve == from_plain


def _masked(raw: bytes) -> bytes:
    raw = re.sub(rb"(?im)^date: .*$", b"date: -", raw)
    return re.sub(rb"[0-9A-F]{8}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{12}", b"<request id>", raw)


def test_an_exception_outside_the_dispatcher_is_still_an_imm_500(caplog):
    """Routes added next to ``POST /`` later (web page, metrics) get the same safety net."""
    app = create_app(build_actions(Seen()), KEYS.get)

    async def boom(request):
        raise RuntimeError("secret detail")

    app.add_route("/boom", boom, methods=["GET"])
    with caplog.at_level("ERROR", logger="immray.api"), serve(app) as address:
        response = httpx.get(f"http://{address}/boom")
    body = assert_imm_error(response, 500, "InternalError")
    assert "secret detail" not in response.text
    assert any(body["RequestId"] in record.getMessage() for record in caplog.records)


def test_the_store_backed_nonce_store_plugs_in(tmp_path):
    """The store's ``DatabaseNonceStore`` (a real SQLite file) behind the real server refuses a replay."""
    from immray.store.engine import make_engine, session_factory
    from immray.store.migrate import upgrade
    from immray.store.nonces import DatabaseNonceStore

    engine = make_engine(f"sqlite:///{tmp_path / 'immray.db'}")
    upgrade(engine)
    app = create_app(build_actions(Seen()), KEYS.get, nonces=DatabaseNonceStore(session_factory(engine)))
    try:
        with serve(app) as address:
            query = {"ProjectName": "p"}
            headers = sign(
                access_key_id=ACCESS_KEY_ID, secret=SECRET, action="GetProject", host=address, query=query
            )
            url = f"http://{address}/?{encode_query(query)}"
            assert httpx.post(url, headers=headers).status_code == 200
            assert_imm_error(httpx.post(url, headers=headers), 400, "SignatureNonceUsed")
            assert post(address, "GetProject", query).status_code == 200
    finally:
        engine.dispose()
