"""s3:// and oss:// indexing against a local S3-compatible server (moto, on loopback), and DetectImageFaces /
CompareImageFaces, through the official SDK on a live server (SQLite: these paths do not depend on the
database backend, which test_files_index covers on both)."""

from __future__ import annotations

import pytest
from alibabacloud_imm20200930 import models
from live_immray import sdk_error, unique
from live_indexing import batch_index, get_files, index_and_wait, indexing_server, new_dataset

from immray.faces.similarity import distance_similarity
from immray.services.analysis import analyzer_for
from photo_testkit import write_photo_set
from s3_testkit import bucket_settings, closed_port, moto_server, s3_client

BUCKET = "photos"


@pytest.fixture(scope="module")
def photos(tmp_path_factory, sample_photo):
    return write_photo_set(tmp_path_factory.mktemp("roots") / "library", sample_photo)


@pytest.fixture(scope="module")
def s3_url():
    with moto_server() as url:
        client = s3_client(url)
        client.create_bucket(Bucket=BUCKET)
        yield url


@pytest.fixture(scope="module")
def server(request, tmp_path_factory, photos, s3_url):
    buckets = {
        BUCKET: bucket_settings(s3_url),
        # an endpoint nobody listens on
        "offline": {**bucket_settings(s3_url), "endpoint_url": f"http://127.0.0.1:{closed_port()}"},
    }
    with indexing_server(
        request, tmp_path_factory.mktemp("data"), "sqlite", [photos.root], buckets=buckets
    ) as live:
        yield live


def test_s3_and_oss_uris_are_read_through_the_configured_endpoint(server, photos, s3_url):
    store = s3_client(s3_url)
    for name in ("group_small.jpg", "portrait.png"):
        store.put_object(Bucket=BUCKET, Key=f"albums/2024/{name}", Body=photos.good[name].read_bytes())
    store.put_object(Bucket=BUCKET, Key="albums/notes.jpg", Body=photos.bad["notes.jpg"].read_bytes())
    client = server.client()
    project, dataset = new_dataset(client)
    uris = [
        f"s3://{BUCKET}/albums/2024/group_small.jpg",
        f"oss://{BUCKET}/albums/2024/portrait.png",
        f"oss://{BUCKET}/albums/notes.jpg",
        f"oss://{BUCKET}/albums/missing.jpg",
        "oss://offline/albums/2024/portrait.png",
    ]
    files = index_and_wait(client, project, dataset, uris)
    analyzer = analyzer_for(server.settings)
    group, portrait = files[uris[0]], files[uris[1]]
    assert (group.object_status, group.figure_count) == (
        "Indexed",
        len(analyzer.analyze(photos.good["group_small.jpg"].read_bytes()).faces),
    )
    assert (portrait.object_status, portrait.figure_count, portrait.filename) == (
        "Indexed",
        1,
        "portrait.png",
    )
    assert portrait.size == photos.good["portrait.png"].stat().st_size and portrait.etag
    assert files[uris[2]].object_status == "Failed" and files[uris[2]].reason.startswith("[InvalidImage]")
    assert files[uris[3]].reason == "[InvalidArgument] File does not exist."
    assert files[uris[4]].object_status == "Failed" and files[uris[4]].reason.startswith(
        "[SourceUnavailable]"
    )

    before = [f.figure_id for f in portrait.figures]
    again = index_and_wait(client, project, dataset, uris[:2])
    assert [f.figure_id for f in again[uris[1]].figures] == before  # same ETag: a no-op
    store.put_object(
        Bucket=BUCKET, Key="albums/2024/portrait.png", Body=photos.good["astronaut_crop.jpg"].read_bytes()
    )
    changed = index_and_wait(client, project, dataset, [uris[1]])[uris[1]]
    assert changed.image_width == 256 and not {f.figure_id for f in changed.figures} & set(before)


def test_an_unconfigured_bucket_fails_the_request(server):
    client = server.client()
    project, dataset = new_dataset(client)
    error = sdk_error(lambda: batch_index(client, project, dataset, ["s3://elsewhere/a.jpg"]))
    assert error.code == "InvalidArgument" and "s3://elsewhere/a.jpg" in error.message
    assert get_files(client, project, dataset, ["s3://elsewhere/a.jpg"]) == {}


def _detect(client, project, uri):
    return client.detect_image_faces(
        models.DetectImageFacesRequest(project_name=project, source_uri=uri)
    ).body.faces


def _compare(client, project, uri1, uri2):
    return client.compare_image_faces(
        models.CompareImageFacesRequest(
            project_name=project, source=models.CompareImageFacesRequestSource(uri1=uri1, uri2=uri2)
        )
    ).body.similarity


def test_detect_image_faces_gives_the_pipelines_faces_as_figures(server, photos, s3_url):
    client = server.client()
    project, _ = new_dataset(client)
    expected = analyzer_for(server.settings).analyze(photos.good["group.jpg"].read_bytes()).faces
    faces = _detect(client, project, photos.uri("group.jpg"))
    assert sorted((f.boundary.left, f.boundary.top, f.boundary.width) for f in faces) == sorted(
        (f.boundary.left, f.boundary.top, f.boundary.width) for f in expected
    )
    assert all(f.figure_type == "face" and f.figure_id and 0 < f.face_quality <= 1 for f in faces)
    assert all(
        f.head_pose is not None and f.sharpness is not None and f.figure_cluster_id is None for f in faces
    )
    s3_client(s3_url).put_object(
        Bucket=BUCKET, Key="detect/portrait.png", Body=photos.good["portrait.png"].read_bytes()
    )
    assert len(_detect(client, project, f"oss://{BUCKET}/detect/portrait.png")) == 1
    for uri, words in (
        ("http://127.0.0.1/a.jpg", "refused"),
        (photos.uri("notes.jpg"), "not a usable image"),
        (photos.uri("portrait.png") + "-missing", "cannot be read"),
        ((photos.root / "photos").as_uri() + "/../bad/empty.jpg", "'..'"),
    ):
        error = sdk_error(lambda uri=uri: _detect(client, project, uri))
        assert error.code == "InvalidArgument" and words in error.message, (uri, error.message)
    assert sdk_error(lambda: _detect(client, unique("noproject"), photos.uri("portrait.png"))).code == (
        "ResourceNotFound"
    )


def test_compare_image_faces_is_calibrated_at_the_same_person_boundary(server, photos):
    client = server.client()
    project, _ = new_dataset(client)
    same = [
        ("portrait.png", "portrait_mirrored.jpg"),
        ("portrait.png", "portrait_large.jpg"),
        ("astronaut.png", "astronaut_crop.jpg"),
        ("astronaut_small.jpg", "astronaut_mirrored.jpg"),
    ]
    different = [("portrait.png", "astronaut.png"), ("astronaut_crop.jpg", "portrait_large.jpg")]
    for a, b in same:
        assert _compare(client, project, photos.uri(a), photos.uri(b)) > 0.5, (a, b)
    for a, b in different:
        assert _compare(client, project, photos.uri(a), photos.uri(b)) < 0.5, (a, b)
    assert _compare(client, project, photos.uri("portrait.png"), photos.uri("portrait.png")) > 0.99
    error = sdk_error(lambda: _compare(client, project, photos.uri("portrait.png"), photos.uri("notes.jpg")))
    assert error.code == "InvalidArgument" and "Source.URI2" in error.message
    blank = photos.root / "photos" / "blank.png"
    from PIL import Image

    Image.new("RGB", (200, 200), (120, 160, 200)).save(blank)
    error = sdk_error(lambda: _compare(client, project, blank.as_uri(), photos.uri("portrait.png")))
    assert error.code == "InvalidArgument" and "no face" in error.message and "Source.URI1" in error.message


@pytest.mark.parametrize("distance", [0.0, 0.3, 0.45, 0.59, 0.6, 0.61, 0.75, 1.2, 50.0])
def test_the_similarity_map_is_monotonic_with_one_half_at_the_threshold(distance):
    value = distance_similarity(distance)
    assert 0.0 <= value <= 1.0
    assert (value > 0.5) == (distance < 0.6) and (value == 0.5) == (distance == 0.6)
    assert distance_similarity(distance + 0.01) < value or value == 0.0
