"""A dataset's FaceDetectionMode, through the official SDK against a server on its default detector.

The other indexing tests run their servers in fast mode (tests/photo_testkit.py says why); this one keeps
the server's default (accurate) and checks that each dataset's photos get the faces of its own mode's
pipeline. The modes tell themselves apart by their boxes: fast shows the detector a shrunk photo, so its
boxes fall a few pixels away from accurate's.
"""

from __future__ import annotations

import shutil

import pytest
from alibabacloud_imm20200930 import models
from live_immray import sdk_error
from live_indexing import index_and_wait, indexing_server, new_dataset

from immray.services.analysis import analyzer_for
from immray.settings import Settings

MODE = "FaceDetectionMode"


@pytest.fixture(scope="module")
def photos(tmp_path_factory, sample_photo):
    root = tmp_path_factory.mktemp("roots") / "modes"
    root.mkdir()
    for name in ("astronaut", "portrait"):
        shutil.copyfile(sample_photo(name), root / f"{name}.png")
    shutil.copyfile(sample_photo("astronaut"), root / "astronaut-later.png")
    return root


@pytest.fixture(scope="module")
def server(request, tmp_path_factory, photos):
    default = Settings.model_fields["detector"].default
    with indexing_server(
        request, tmp_path_factory.mktemp("data"), "sqlite", [photos], detector=default
    ) as live:
        assert live.settings.detector == "accurate"
        yield live


def boxes(faces) -> list[tuple[int, int, int, int]]:
    return sorted((f.boundary.left, f.boundary.top, f.boundary.width, f.boundary.height) for f in faces)


def mode_of(client, project: str, dataset: str) -> str:
    shown = client.get_dataset(models.GetDatasetRequest(project_name=project, dataset_name=dataset))
    return {p.name: p.value for p in shown.body.dataset.workflow_parameters}[MODE]


def expected(server, photo, mode: str | None = None):
    return boxes(analyzer_for(server.settings, mode).analyze(photo.read_bytes()).faces)


def test_each_dataset_is_indexed_in_its_own_mode(server, photos):
    client = server.client()
    names = ["astronaut.png", "portrait.png"]
    uris = [(photos / name).as_uri() for name in names]
    default = new_dataset(client)
    fast = new_dataset(client, workflow_parameters=[models.WorkflowParameter(name=MODE, value="fast")])
    assert (mode_of(client, *default), mode_of(client, *fast)) == ("default", "fast")

    found = {}
    for dataset in (default, fast):
        files = index_and_wait(client, *dataset, uris)
        assert all(f.object_status == "Indexed" for f in files.values()), files
        found[dataset] = {name: boxes(files[uri].figures) for name, uri in zip(names, uris, strict=True)}
    for name in names:
        assert found[default][name] == expected(server, photos / name)  # the server's default: accurate
        assert found[fast][name] == expected(server, photos / name, "fast")  # on a shrunk photo
        # a real difference: the same one face, in boxes placed apart
        assert len(found[default][name]) == len(found[fast][name]) == 1
        assert found[default][name] != found[fast][name]


def test_a_changed_mode_applies_to_the_photos_indexed_from_then_on(server, photos):
    client = server.client()
    astronaut, later = (photos / "astronaut.png").as_uri(), (photos / "astronaut-later.png").as_uri()
    project, dataset = new_dataset(
        client, workflow_parameters=[models.WorkflowParameter(name=MODE, value="fast")]
    )
    fast_boxes, accurate_boxes = (expected(server, photos / "astronaut.png", m) for m in ("fast", "accurate"))
    assert fast_boxes != accurate_boxes
    assert boxes(index_and_wait(client, project, dataset, [astronaut])[astronaut].figures) == fast_boxes
    client.update_dataset(
        models.UpdateDatasetRequest(
            project_name=project,
            dataset_name=dataset,
            workflow_parameters=[models.WorkflowParameter(name=MODE, value="accurate")],
        )
    )
    assert mode_of(client, project, dataset) == "accurate"
    files = index_and_wait(client, project, dataset, [astronaut, later])
    assert boxes(files[later].figures) == accurate_boxes
    assert boxes(files[astronaut].figures) == fast_boxes  # unchanged since it was indexed: kept as they were


def test_calls_without_a_dataset_use_the_servers_detector(server, photos):
    client = server.client()
    project, _ = new_dataset(client, workflow_parameters=[models.WorkflowParameter(name=MODE, value="fast")])
    faces = client.detect_image_faces(
        models.DetectImageFacesRequest(project_name=project, source_uri=(photos / "astronaut.png").as_uri())
    ).body.faces
    assert boxes(faces) == expected(server, photos / "astronaut.png") and len(faces) == 1


@pytest.mark.parametrize("value", ["hog", "FAST", "", "accurate "])
def test_a_bad_mode_is_invalid_argument(server, value):
    client = server.client()
    error = sdk_error(
        lambda: new_dataset(client, workflow_parameters=[models.WorkflowParameter(name=MODE, value=value)])
    )
    assert error.code == "InvalidArgument" and "FaceDetectionMode must be one of default, accurate, fast" in (
        error.message
    )
