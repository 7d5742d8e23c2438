"""A live immray server that may read a folder of real photos (and, if asked, an S3 server's buckets),
with helpers to index through the SDK and wait for the analysis to end."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alibabacloud_imm20200930 import models
from alibabacloud_imm20200930.client import Client
from live_immray import Key, LiveImmray, database_url_for, unique

from immray.policy import ADMIN_POLICY
from immray.services import access_keys
from immray.services.database import Database
from immray.settings import Settings
from photo_testkit import TEST_DETECTOR
from ray_testkit import fresh_namespace, serve_app

WAIT_SECONDS = 180


@contextlib.contextmanager
def indexing_server(
    request: pytest.FixtureRequest, data_dir: Path, backend: str, roots: list[Path], **settings: Any
) -> Iterator[LiveImmray]:
    url = database_url_for(request, backend, data_dir)
    settings.setdefault("detector", TEST_DETECTOR)  # HOG alone unless asked otherwise: photo_testkit says why
    settings.setdefault("ray_namespace", fresh_namespace())  # its dataset actors: see ray_testkit
    config = Settings(data_dir=data_dir, database_url=url, allowed_roots=roots, **settings)
    db = Database.connect(url, migrate=True)
    admin = access_keys.create_key(db, ADMIN_POLICY, is_admin=True)
    try:
        with serve_app(config) as address:
            yield LiveImmray(address, config, db, Key(admin.info.access_key_id, admin.secret))
    finally:
        db.close()


def new_dataset(client: Client, **dataset: Any) -> tuple[str, str]:
    project, name = unique("p"), unique("d")
    client.create_project(models.CreateProjectRequest(project_name=project))
    client.create_dataset(models.CreateDatasetRequest(project_name=project, dataset_name=name, **dataset))
    return project, name


def batch_index(client: Client, project: str, dataset: str, uris: list[str], **options: Any) -> str:
    response = client.batch_index_file_meta(
        models.BatchIndexFileMetaRequest(
            project_name=project,
            dataset_name=dataset,
            files=[models.InputFile(uri=uri) for uri in uris],
            **options,
        )
    )
    return response.body.event_id


def get_files(client: Client, project: str, dataset: str, uris: list[str]) -> dict[str, models.File]:
    found: dict[str, models.File] = {}
    for start in range(0, len(uris), 100):
        response = client.batch_get_file_meta(
            models.BatchGetFileMetaRequest(
                project_name=project, dataset_name=dataset, uris=uris[start : start + 100]
            )
        )
        found |= {file.uri: file for file in response.body.files}
    return found


def wait_done(client: Client, project: str, dataset: str, uris: list[str]) -> dict[str, models.File]:
    """The files once none of them is Pending (each must be indexed in the dataset)."""
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        files = get_files(client, project, dataset, uris)
        assert set(files) == set(uris), f"not indexed: {sorted(set(uris) - set(files))}"
        if all(file.object_status != "Pending" for file in files.values()):
            return files
        assert time.monotonic() < deadline, "files still Pending: " + json.dumps(
            [uri for uri, file in files.items() if file.object_status == "Pending"]
        )
        time.sleep(0.2)


def index_and_wait(client: Client, project: str, dataset: str, uris: list[str], **options: Any):
    batch_index(client, project, dataset, uris, **options)
    return wait_done(client, project, dataset, uris)
