"""What the protocol layer costs: signature verification alone, and a no-op IMM call through the official SDK.

Prints figures, asserts nothing. Run: ``python -m immray.bench.api_overhead [--calls 300]``.
The end-to-end figures include the SDK's own request building and the loopback HTTP round trip, so they are
an upper bound on the dispatcher's overhead, not the dispatcher alone.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from datetime import UTC, datetime

from alibabacloud_imm20200930 import models
from alibabacloud_imm20200930.client import Client
from alibabacloud_tea_openapi.models import Config

from immray.api import ActionRegistry, Call, Scope, build_server, create_app
from immray.api.server import bound_socket
from immray.protocol import HttpRequest, MemoryNonceStore, sign, verify
from immray.protocol.params import Json
from immray.protocol.signing import encode_query

KEY, SECRET = "benchKey", "benchSecret"


def bench_verify(count: int) -> None:
    now = datetime.now(UTC)
    query = {"ProjectName": "p", "DatasetName": "d", "Files": '[{"URI":"oss://bucket/a.jpg"}]' * 3}
    requests = []
    for _ in range(count):
        headers = sign(access_key_id=KEY, secret=SECRET, action="BatchIndexFileMeta", host="h", query=query)
        requests.append(HttpRequest("POST", "/", encode_query(query), tuple(headers.items())))
    nonces = MemoryNonceStore()
    start = time.perf_counter()
    for request in requests:
        verify(request, {KEY: SECRET}.get, nonces, now=now)
    elapsed = time.perf_counter() - start
    print(f"verify (ACS3, in process):      {elapsed / count * 1e6:8.1f} µs per request ({count} requests)")


def _actions() -> ActionRegistry:
    actions = ActionRegistry()

    @actions.action("GetProject", scope=Scope.PROJECT)
    def get_project(call: Call) -> dict:
        return {"Project": {"ProjectName": call.params["ProjectName"]}}

    @actions.action("BatchIndexFileMeta", scope=Scope.DATASET, params=[Json("Files", list, max_items=100)])
    def batch_index(call: Call) -> dict:
        return {"EventId": str(len(call.params["Files"]))}

    return actions


def _timed(call, count: int) -> list[float]:
    times = []
    for _ in range(count):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return times


def _report(label: str, times: list[float]) -> None:
    median = statistics.median(times) * 1000
    p95 = sorted(times)[int(len(times) * 0.95) - 1] * 1000
    print(
        f"{label:<32}{median:8.2f} ms median, {p95:.2f} ms p95, {len(times) / sum(times):7.0f} calls/s (serial)"
    )


def bench_sdk(count: int) -> None:
    sock = bound_socket("127.0.0.1", 0)
    port = sock.getsockname()[1]
    server = build_server(create_app(_actions(), {KEY: SECRET}.get), "127.0.0.1", port, log_level="warning")
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    try:
        config = Config(
            access_key_id=KEY, access_key_secret=SECRET, endpoint=f"127.0.0.1:{port}", protocol="http"
        )
        client = Client(config)
        get = models.GetProjectRequest(project_name="p")
        _report("SDK GetProject (no-op):", _timed(lambda: client.get_project(get), count))
        files = [models.InputFile(uri=f"oss://bucket/some/long/path/photo_{i:05d}.jpg") for i in range(100)]
        batch = models.BatchIndexFileMetaRequest(project_name="p", dataset_name="d", files=files)
        _report("SDK BatchIndexFileMeta x100:", _timed(lambda: client.batch_index_file_meta(batch), count))
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300, help="requests per measurement")
    args = parser.parse_args()
    bench_verify(args.calls * 10)
    bench_sdk(args.calls)


if __name__ == "__main__":
    main()
