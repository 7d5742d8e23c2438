"""Age, Gender and Emotion in every Figure, through the official SDK: indexed, shown, queried, aggregated per
person, and left out when a dataset switches them off (its ``FaceAttributes`` WorkflowParameter).

The group photo shows three women and three men; the two men seated in the middle laugh
(tests/faces/test_attributes.py has the geometry).
"""

from __future__ import annotations

import shutil

import pytest
from alibabacloud_imm20200930 import models
from live_immray import BACKENDS, sdk_error
from live_indexing import get_files, index_and_wait, indexing_server, new_dataset
from people_testkit import cluster

from immray.faces.age_error import AGE_ERROR

NAMES = ("group.jpg", "portrait.png", "astronaut.png")
# x of the box centre -> (gender, laughing), the group photo's faces
GROUP = {110: ("female", False), 320: ("female", False), 515: ("male", True), 795: ("male", True),
         955: ("male", False), 1180: ("female", False)}  # fmt: skip


@pytest.fixture(scope="module")
def photos(tmp_path_factory, sample_photo):
    root = tmp_path_factory.mktemp("roots") / "attributes"
    root.mkdir()
    for name in NAMES:
        shutil.copyfile(sample_photo(name.split(".")[0]), root / name)
    return root


@pytest.fixture(scope="module", params=BACKENDS)
def server(request, tmp_path_factory, photos):
    with indexing_server(
        request, tmp_path_factory.mktemp("data"), request.param, [photos], task_poll_seconds=0.1
    ) as live:
        yield live


@pytest.fixture(scope="module")
def indexed(server, photos):
    """A dataset (one face makes a person) with the three photos indexed: (client, project, dataset, files)."""
    client = server.client()
    project, dataset = new_dataset(
        client, workflow_parameters=[models.WorkflowParameter(name="FigureClusterMinFaces", value="1")]
    )
    uris = [(photos / name).as_uri() for name in NAMES]
    files = index_and_wait(client, project, dataset, uris)
    assert all(f.object_status == "Indexed" for f in files.values()), files
    return client, project, dataset, files


def uri(photos, name: str) -> str:
    return (photos / name).as_uri()


def test_every_figure_carries_age_gender_and_emotion(indexed, photos):
    _, _, _, files = indexed
    figures = [figure for file in files.values() for figure in file.figures]
    assert len(figures) == 8
    for figure in figures:
        assert isinstance(figure.age, int) and figure.age > 0
        assert figure.gender in ("male", "female") and 0.5 < figure.gender_confidence <= 1
        assert isinstance(figure.emotion, str) and 0 < figure.emotion_confidence <= 1
        assert figure.glasses is None and figure.hat is None  # no shipped model estimates them
        # AgeSD, calibrated on adults, for the ages it covers (immray.faces.age_error)
        # (none below the ages it covers: one young-looking adult of these photos is read as 13)
        assert figure.age_sd == AGE_ERROR.sd(figure.age), (figure.age, figure.age_sd)
        assert figure.age_sd is None or isinstance(figure.age_sd, float)
    assert sum(figure.age_sd is not None for figure in figures) >= 6
    for figure in files[uri(photos, "group.jpg")].figures:
        centre = figure.boundary.left + figure.boundary.width / 2
        gender, laughing = GROUP[min(GROUP, key=lambda x: abs(x - centre))]
        assert figure.gender == gender
        if laughing:
            assert figure.emotion == "happiness"


def test_get_file_meta_and_detect_image_faces_show_the_same_attributes(indexed, photos):
    client, project, dataset, files = indexed
    portrait = uri(photos, "portrait.png")
    (stored,) = files[portrait].figures
    shown = client.get_file_meta(
        models.GetFileMetaRequest(project_name=project, dataset_name=dataset, uri=portrait)
    ).body.files[0]
    (detected,) = client.detect_image_faces(
        models.DetectImageFacesRequest(project_name=project, source_uri=portrait)
    ).body.faces
    for figure in (shown.figures[0], detected):
        assert (figure.age, figure.age_sd, figure.gender, figure.emotion) == (
            stored.age,
            stored.age_sd,
            stored.gender,
            stored.emotion,
        )


def _query(client, project, dataset, query: models.SimpleQuery) -> set[str]:
    body = client.simple_query(
        models.SimpleQueryRequest(project_name=project, dataset_name=dataset, query=query, max_results=100)
    ).body
    return {file.uri for file in body.files or []}


def test_simple_query_on_age_gender_and_emotion_returns_exactly_the_matching_files(indexed):
    client, project, dataset, files = indexed
    ages = sorted({figure.age for file in files.values() for figure in file.figures})
    for operation, test in (
        ("gte", lambda a, v: a >= v),
        ("gt", lambda a, v: a > v),
        ("lt", lambda a, v: a < v),
        ("lte", lambda a, v: a <= v),
        ("eq", lambda a, v: a == v),
    ):
        for value in (ages[0], ages[len(ages) // 2], ages[-1]):
            query = models.SimpleQuery(field="Figures.Age", operation=operation, value=str(value))
            expected = {u for u, f in files.items() if any(test(fig.age, value) for fig in f.figures)}
            assert _query(client, project, dataset, query) == expected, (operation, value)
    for field, value in (("Gender", "male"), ("Gender", "female"), ("Emotion", "happiness")):
        query = models.SimpleQuery(field=f"Figures.{field}", operation="eq", value=value)
        expected = {
            u for u, f in files.items() if any(getattr(fig, field.lower()) == value for fig in f.figures)
        }
        assert _query(client, project, dataset, query) == expected
    middle = ages[len(ages) // 2]
    both = models.SimpleQuery(
        operation="and",
        sub_queries=[
            models.SimpleQuery(field="Figures.Gender", operation="eq", value="female"),
            models.SimpleQuery(field="Figures.Age", operation="gte", value=str(middle)),
        ],
    )
    expected = {
        u
        for u, f in files.items()
        if any(fig.gender == "female" for fig in f.figures) and any(fig.age >= middle for fig in f.figures)
    }
    assert _query(client, project, dataset, both) == expected


@pytest.mark.parametrize("value", ["old", "", "-3", "nan"])
def test_a_bad_age_is_invalid_argument(indexed, value):
    client, project, dataset, _ = indexed
    query = models.SimpleQuery(field="Figures.Age", operation="gt", value=value)
    error = sdk_error(lambda: _query(client, project, dataset, query))
    assert error.code == "InvalidArgument" and "Figures.Age" in error.message


def test_each_person_carries_gender_and_the_ages_of_their_faces(indexed):
    client, project, dataset, files = indexed
    cluster(client, project, dataset)
    people = client.query_figure_clusters(
        models.QueryFigureClustersRequest(project_name=project, dataset_name=dataset, max_results=100)
    ).body.figure_clusters
    refreshed = get_files(client, project, dataset, list(files))
    faces_of: dict[str, list] = {}
    for file in refreshed.values():
        for figure in file.figures:
            faces_of.setdefault(figure.figure_cluster_id, []).append(figure)
    assert people
    for person in people:
        faces = faces_of[person.object_id]
        ages = [f.age for f in faces]
        assert (person.min_age, person.max_age) == (min(ages), max(ages))
        assert person.average_age == pytest.approx(sum(ages) / len(ages), abs=0.05)
        males = sum(f.gender == "male" for f in faces)
        if males * 2 != len(faces):
            assert person.gender == ("male" if males * 2 > len(faces) else "female")


def test_query_figure_clusters_sorts_by_gender_across_pages(indexed):
    client, project, dataset, _ = indexed
    cluster(client, project, dataset)
    everyone = client.query_figure_clusters(
        models.QueryFigureClustersRequest(project_name=project, dataset_name=dataset, max_results=100)
    ).body.figure_clusters
    for order in ("asc", "desc"):
        seen, token = [], None
        while True:
            body = client.query_figure_clusters(
                models.QueryFigureClustersRequest(
                    project_name=project,
                    dataset_name=dataset,
                    sort="Gender",
                    order=order,
                    max_results=2,
                    next_token=token,
                )
            ).body
            seen.extend(body.figure_clusters)
            token = body.next_token
            if not token:
                break
        assert sorted(p.object_id for p in seen) == sorted(p.object_id for p in everyone)
        genders = [p.gender or "" for p in seen]
        assert genders == sorted(genders, reverse=order == "desc")
        assert {"male", "female"} <= set(genders)


def test_a_dataset_can_switch_attributes_off(server, photos):
    client = server.client()
    project, dataset = new_dataset(
        client, workflow_parameters=[models.WorkflowParameter(name="FaceAttributes", value="false")]
    )
    shown = client.get_dataset(models.GetDatasetRequest(project_name=project, dataset_name=dataset))
    assert {p.name: p.value for p in shown.body.dataset.workflow_parameters}["FaceAttributes"] == "false"
    group = uri(photos, "group.jpg")
    figures = index_and_wait(client, project, dataset, [group])[group].figures
    assert len(figures) == 6
    for figure in figures:
        assert (figure.age, figure.age_sd, figure.gender, figure.emotion, figure.gender_confidence) == (
            None,
        ) * 5
        assert figure.boundary is not None and figure.face_quality is not None  # the rest as ever
    query = models.SimpleQuery(field="Figures.Gender", operation="eq", value="male")
    assert _query(client, project, dataset, query) == set()
