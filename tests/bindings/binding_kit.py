"""Helpers of the binding tests: photos written into a bound folder, and waits on what the server shows."""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from typing import TypeVar

from alibabacloud_imm20200930 import models as imm
from alibabacloud_imm20200930.client import Client
from darabonba.exceptions import UnretryableException
from PIL import Image, ImageOps

from immray.samples import sample_path

WAIT_SECONDS = 180
T = TypeVar("T")


def jpeg(person: str, *, mirror: bool = False, scale: float = 1.0) -> bytes:
    """A JPEG of a sample photo, mirrored and/or rescaled (a new copy of the same person)."""
    image = ImageOps.exif_transpose(Image.open(sample_path(person))).convert("RGB")
    if mirror:
        image = ImageOps.mirror(image)
    if scale != 1.0:
        image = image.resize(
            (round(image.width * scale), round(image.height * scale)), Image.Resampling.LANCZOS
        )
    out = io.BytesIO()
    image.save(out, "JPEG", quality=92)
    return out.getvalue()


def truncated_jpeg() -> bytes:
    data = jpeg("astronaut")
    return data[: len(data) // 3]


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = WAIT_SECONDS) -> T:
    deadline = time.monotonic() + timeout
    while True:
        try:
            found = probe()
        except UnretryableException:  # a dropped connection: the SDK does not retry, the wait does
            found = None
        if found:
            return found
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def get_binding(client: Client, project: str, dataset: str, uri: str) -> imm.Binding:
    return client.get_binding(
        imm.GetBindingRequest(project_name=project, dataset_name=dataset, uri=uri)
    ).body.binding


def wait_incremental(client: Client, project: str, dataset: str, uri: str) -> imm.Binding:
    """The binding once its full scan has ended (every image of it analysed)."""

    def done() -> imm.Binding | None:
        binding = get_binding(client, project, dataset, uri)
        return binding if binding.phase == "IncrementalScanning" else None

    return wait_for(f"{uri} to end its full scan", done)


def files_of(client: Client, project: str, dataset: str, uris: list[str]) -> dict[str, imm.File]:
    body = client.batch_get_file_meta(
        imm.BatchGetFileMetaRequest(project_name=project, dataset_name=dataset, uris=uris)
    ).body
    return {file.uri: file for file in body.files}


def wait_files(
    client: Client, project: str, dataset: str, present: list[str], absent: list[str] = ()
) -> dict[str, imm.File]:
    """The files of ``present`` once each is indexed and done (not Pending) and none of ``absent`` is."""

    def settled() -> dict[str, imm.File] | None:
        found = files_of(client, project, dataset, [*present, *absent])
        if set(found) != set(present):
            return None
        return found if all(file.object_status != "Pending" for file in found.values()) else None

    return wait_for(f"files {present} done and {list(absent)} gone", settled)


def clustering_tasks(client: Client, project: str) -> list[imm.TaskInfo]:
    body = client.list_tasks(
        imm.ListTasksRequest(project_name=project, task_types=["FaceClustering"], max_results=100)
    ).body
    return list(body.tasks or [])
