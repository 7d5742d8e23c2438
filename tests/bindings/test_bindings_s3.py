"""A bucket prefix bound to a dataset, on the local S3-compatible server of the indexing tests: the images
under the prefix are indexed (not the text file, not the objects outside the prefix), then a new object is
indexed and a deleted one's metadata deleted by the periodic listing; an oss:// bucket nobody configured
is refused."""

from __future__ import annotations

import pytest
from alibabacloud_imm20200930 import models as imm
from binding_kit import get_binding, jpeg, wait_files, wait_incremental
from live_immray import sdk_error
from live_indexing import indexing_server, new_dataset

from s3_testkit import bucket_settings, moto_server, s3_client

BUCKET = "bound-photos"


@pytest.fixture(scope="module")
def s3_url():
    with moto_server() as url:
        s3_client(url).create_bucket(Bucket=BUCKET)
        yield url


def test_a_bound_prefix_is_followed(request, tmp_path, s3_url):
    s3 = s3_client(s3_url)
    objects = {
        "people/astronaut.jpg": jpeg("astronaut", scale=0.9),
        "people/family/portrait.jpg": jpeg("portrait", scale=2.0),
        "people/readme.txt": b"not a photo",
        "others/astronaut.jpg": jpeg("astronaut", scale=0.8),
    }
    for key, data in objects.items():
        s3.put_object(Bucket=BUCKET, Key=key, Body=data)
    uri = {key: f"s3://{BUCKET}/{key}" for key in [*objects, "people/new.jpg"]}
    buckets = {BUCKET: bucket_settings(s3_url)}
    with indexing_server(
        request,
        tmp_path,
        "sqlite",
        [tmp_path],
        buckets=buckets,
        binding_scan_seconds=0.5,
        binding_watch=False,
    ) as live:
        client = live.client()
        project, dataset = new_dataset(client)
        error = sdk_error(
            lambda: client.create_binding(
                imm.CreateBindingRequest(project_name=project, dataset_name=dataset, uri="oss://elsewhere/p/")
            )
        )
        assert error.code == "InvalidArgument" and "no endpoint is configured" in error.message
        binding = client.create_binding(
            imm.CreateBindingRequest(project_name=project, dataset_name=dataset, uri=f"s3://{BUCKET}/people/")
        ).body.binding
        assert binding.uri == f"s3://{BUCKET}/people/"
        wait_incremental(client, project, dataset, binding.uri)
        images = [uri["people/astronaut.jpg"], uri["people/family/portrait.jpg"]]
        found = wait_files(
            client, project, dataset, images, absent=[uri["people/readme.txt"], uri["others/astronaut.jpg"]]
        )
        assert {(f.object_status, f.figure_count) for f in found.values()} == {("Indexed", 1)}

        s3.put_object(Bucket=BUCKET, Key="people/new.jpg", Body=jpeg("astronaut", mirror=True, scale=0.9))
        s3.delete_object(Bucket=BUCKET, Key="people/astronaut.jpg")
        after = wait_files(
            client,
            project,
            dataset,
            [uri["people/family/portrait.jpg"], uri["people/new.jpg"]],
            absent=[uri["people/astronaut.jpg"]],
        )
        assert after[uri["people/new.jpg"]].object_status == "Indexed"
        assert get_binding(client, project, dataset, binding.uri).state == "Running"
