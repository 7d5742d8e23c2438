"""The API tests' world: access keys, a few real IMM actions registered by the tests, the SDK client."""

from __future__ import annotations

from dataclasses import dataclass, field

from alibabacloud_imm20200930.client import Client
from alibabacloud_tea_openapi.models import Config

from immray.api import ActionRegistry, Call, Resource, Scope
from immray.protocol.params import Bool, Json, Str
from immray.protocol.signing import encode_query, sign

ACCESS_KEY_ID = "testAccessKeyId"
SECRET = "testAccessKeySecret"
READER_KEY_ID = "readerKeyId"
READER_SECRET = "readerSecret"
KEYS = {ACCESS_KEY_ID: SECRET, READER_KEY_ID: READER_SECRET}


@dataclass
class Seen:
    """What the handlers received, so tests can check what crossed the wire."""

    calls: list[Call] = field(default_factory=list)
    request_lines: list[int] = field(default_factory=list)  # bytes of each request line received

    def recording(self, app):
        """``app`` behind an ASGI shim that measures each request line as uvicorn parsed it."""

        async def recorded(scope, receive, send):
            if scope["type"] == "http":
                target = scope["raw_path"] + (b"?" + scope["query_string"] if scope["query_string"] else b"")
                self.request_lines.append(len(f"{scope['method']}  HTTP/1.1".encode()) + len(target))
            await app(scope, receive, send)

        return recorded


def build_actions(seen: Seen) -> ActionRegistry:
    actions = ActionRegistry()

    @actions.action("GetProject", scope=Scope.PROJECT, params=[Bool("WithStatistics", default=False)])
    async def get_project(call: Call) -> dict:
        seen.calls.append(call)
        name = call.params["ProjectName"]
        return {
            "Project": {"ProjectName": name, "Description": f"statistics={call.params['WithStatistics']}"}
        }

    @actions.action(
        "BatchGetFigureCluster",
        scope=Scope.DATASET,
        params=[Json("ObjectIds", list, required=True, items=str, min_items=1, max_items=100)],
    )
    def batch_get(call: Call) -> dict:
        seen.calls.append(call)
        clusters = [{"ObjectId": oid, "ObjectType": "figure-cluster"} for oid in call.params["ObjectIds"]]
        return {"FigureClusters": clusters}

    @actions.action(
        "BatchIndexFileMeta",
        scope=Scope.DATASET,
        params=[
            Json("Files", list, required=True, items=dict, max_items=100),
            Str("UserData", max_bytes=2048),
        ],
    )
    def batch_index(call: Call) -> dict:
        seen.calls.append(call)
        return {"EventId": f"files-{len(call.params['Files'])}"}

    @actions.action("DeleteProject", scope=Scope.PROJECT)
    def broken(call: Call) -> dict:
        raise RuntimeError("database password is hunter2")

    @actions.action("GetDataset", scope=Scope.DATASET)
    def lower_case(call: Call) -> dict:
        return {"dataset": {"DatasetName": "d"}}

    return actions


def deny_reader_writes(access_key_id: str, action: str, resource: Resource) -> bool:
    """A stand-in policy: the reader key may only read."""
    return access_key_id != READER_KEY_ID or action.startswith(("Get", "BatchGet"))


def sdk_client(address: str, key_id: str = ACCESS_KEY_ID, secret: str = SECRET, **options) -> Client:
    return Client(
        Config(
            access_key_id=key_id,
            access_key_secret=secret,
            endpoint=address,
            protocol="http",
            region_id="cn-hangzhou",
            **options,
        )
    )


def signed_head(address: str, line_length: int) -> bytes:
    """A signed GetProject request head whose request line (``POST /?... HTTP/1.1``) is ``line_length`` bytes."""
    base = len(f"POST /?{encode_query({'ProjectName': 'p', 'Padding': ''})} HTTP/1.1")
    query = {"ProjectName": "p", "Padding": "x" * (line_length - base)}
    line = f"POST /?{encode_query(query)} HTTP/1.1"
    assert len(line) == line_length
    headers = sign(access_key_id=ACCESS_KEY_ID, secret=SECRET, action="GetProject", host=address, query=query)
    fields = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    return f"{line}\r\n{fields}content-length: 0\r\nconnection: close\r\n\r\n".encode()
