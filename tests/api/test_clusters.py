"""People through the official SDK on a live server, SQLite and PostgreSQL: real photos indexed, clustered
by two tasks requested at once, then read back (QueryFigureClusters, Get/BatchGet, SimpleQuery) and
searched (SearchImageFigureCluster). The curation of people is in test_clusters_curation.py."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from alibabacloud_imm20200930 import models as imm
from live_immray import sdk_error
from people_photos import GROUP
from people_testkit import (
    People,
    all_people,
    faces,
    notify,
    start_clustering,
    wait_task,
    who_is_who,
)

from immray.protocol.times import format_time

GROUP_NAMES = [copy.name for copy in GROUP]


@dataclass
class Library:
    people: People
    project: str
    dataset: str
    tasks: list[imm.GetTaskResponseBody]
    identity: dict[tuple[str, str], str]  # (photo, FigureId) -> person

    @property
    def client(self):
        return self.people.client


@pytest.fixture(scope="module")
def library(people_server: People) -> Library:
    """The group's photos indexed into a new dataset, then two clustering tasks requested back to back."""
    client = people_server.client
    project, dataset = people_server.new_dataset()
    people_server.index(project, dataset, GROUP_NAMES)
    first = start_clustering(client, project, dataset, notification=notify(), user_data="first")
    second = start_clustering(client, project, dataset, notification=notify(), tags={"n": 2})
    tasks = [wait_task(client, project, first), wait_task(client, project, second)]
    identity = who_is_who(people_server, project, dataset, GROUP_NAMES)
    return Library(people_server, project, dataset, tasks, identity)


def test_two_tasks_requested_at_once_run_one_after_the_other(library: Library):
    first, second = library.tasks
    assert [task.status for task in library.tasks] == ["Succeeded", "Succeeded"]
    assert [task.task_type for task in library.tasks] == ["FaceClustering", "FaceClustering"]
    assert first.progress == second.progress == 100
    sent = library.people.notifications(first.task_id, second.task_id)
    done = {task_id: sent.get(task_id) for task_id in (first.task_id, second.task_id)}
    assert all(done.values()), "each task sends its notification"
    one, two = done[first.task_id], done[second.task_id]
    # The second ran on what the first committed: had they run side by side, both would have seen the
    # new faces (or one would have failed on the saved state).
    assert (one["ClustersCreated"], one["FacesAssigned"]) == (6, 24)
    assert (two["ClustersCreated"], two["FacesAssigned"], two["ClustersUpdated"]) == (0, 0, 0)
    assert one["UserData"] == "first" and one["TaskType"] == "FaceClustering" and one["Status"] == "Succeeded"
    assert one["ClustersMerged"] == one["ClustersDeleted"] == 0
    assert datetime.fromisoformat(one["EndTime"]) <= datetime.fromisoformat(two["EndTime"])


def test_each_person_is_one_cluster_with_all_their_copies(library: Library):
    people = all_people(library.client, library.project, library.dataset)
    assert len(people) == 6
    found = faces(
        library.client, library.project, library.dataset, [library.people.uri(n) for n in GROUP_NAMES]
    )
    by_uri = {library.people.uri(n): n for n in GROUP_NAMES}
    members: dict[str, set[str]] = defaultdict(set)  # cluster -> persons of its faces
    clusters_of: dict[str, set[str]] = defaultdict(set)  # person -> clusters of their faces
    photos: dict[str, set[str]] = defaultdict(set)
    for uri, figures in found.items():
        for figure in figures:
            person = library.identity[(by_uri[uri], figure.figure_id)]
            members[figure.figure_cluster_id].add(person)
            clusters_of[person].add(figure.figure_cluster_id)
            photos[figure.figure_cluster_id].add(uri)
            assert 0 <= figure.figure_cluster_confidence <= 1
    assert all(len(persons) == 1 for persons in members.values()), members
    assert all(len(clusters) == 1 for clusters in clusters_of.values()), clusters_of
    assert set(members) == {person.object_id for person in people}
    face_counts = Counter(f.figure_cluster_id for figures in found.values() for f in figures)
    for person in people:
        assert person.face_count == face_counts[person.object_id] == 4
        assert person.image_count == len(photos[person.object_id]) == 4
        assert person.object_type == "figure-cluster" and person.object_id.startswith("Cluster-")
        assert person.dataset_name == library.dataset and person.project_name == library.project
        assert person.meta_lock_version == 0 and person.video_count == 0
        cover = person.cover
        assert cover.uri in photos[person.object_id]
        assert [f.figure_cluster_id for f in cover.figures] == [person.object_id]
        best = max(
            (f for figures in found.values() for f in figures if f.figure_cluster_id == person.object_id),
            key=lambda f: f.face_quality,
        )
        assert cover.figures[0].face_quality >= best.face_quality - 0.05, "the cover is a good face"
        assert cover.image_width and cover.image_height and cover.figures[0].boundary.width > 0


def test_query_sorts_pages_and_filters(library: Library):
    client, project, dataset = library.client, library.project, library.dataset
    everyone = all_people(client, project, dataset)
    by_id = sorted(p.object_id for p in everyone)
    assert [p.object_id for p in everyone] == by_id, "no Sort: by ObjectId"
    pages, token, total = [], None, None
    while True:
        body = client.query_figure_clusters(
            imm.QueryFigureClustersRequest(
                project_name=project,
                dataset_name=dataset,
                max_results=4,
                next_token=token,
                sort="CreateTime",
                order="desc",
                with_total_count=True,
            )
        ).body
        pages.append([p.object_id for p in body.figure_clusters])
        total, token = body.total_count, body.next_token
        if not token:
            break
    assert [len(page) for page in pages] == [4, 2] and total == 6
    times = {p.object_id: p.create_time for p in everyone}
    listed = [oid for page in pages for oid in page]
    assert sorted(listed) == by_id
    assert [times[oid] for oid in listed] == sorted((times[oid] for oid in listed), reverse=True)

    later = format_time(datetime.now(UTC) + timedelta(hours=1))
    body = client.query_figure_clusters(
        imm.QueryFigureClustersRequest(
            project_name=project,
            dataset_name=dataset,
            create_time_range=imm.TimeRange(start=later),
            with_total_count=True,
        )
    ).body
    assert body.figure_clusters == [] and body.total_count == 0
    body = client.query_figure_clusters(
        imm.QueryFigureClustersRequest(
            project_name=project, dataset_name=dataset, update_time_range=imm.TimeRange(end=later)
        )
    ).body
    assert len(body.figure_clusters) == 6
    body = client.query_figure_clusters(
        imm.QueryFigureClustersRequest(project_name=project, dataset_name=dataset, custom_labels="team=red")
    ).body
    assert body.figure_clusters == []

    for bad, code in (
        ({"max_results": 101}, "InvalidArgument"),
        ({"sort": "Height"}, "InvalidArgument"),
        ({"next_token": "bm90IGEgdG9rZW4"}, "InvalidArgument"),
        ({"custom_labels": "no-equals-sign"}, "InvalidArgument"),
    ):
        request = imm.QueryFigureClustersRequest(project_name=project, dataset_name=dataset, **bad)
        assert sdk_error(lambda request=request: client.query_figure_clusters(request)).code == code, bad
    missing = imm.QueryFigureClustersRequest(project_name=project, dataset_name="nobody")
    assert sdk_error(lambda: client.query_figure_clusters(missing)).code == "ResourceNotFound"


def test_get_and_batch_get(library: Library):
    client, project, dataset = library.client, library.project, library.dataset
    everyone = all_people(client, project, dataset)
    one = client.get_figure_cluster(
        imm.GetFigureClusterRequest(
            project_name=project, dataset_name=dataset, object_id=everyone[0].object_id
        )
    ).body.figure_cluster
    assert one.to_map() == everyone[0].to_map()
    wanted = [everyone[3].object_id, "Cluster-00000000-0000-4000-8000-000000000000", everyone[1].object_id]
    body = client.batch_get_figure_cluster(
        imm.BatchGetFigureClusterRequest(project_name=project, dataset_name=dataset, object_ids=wanted)
    ).body
    assert [c.object_id for c in body.figure_clusters] == [wanted[0], wanted[2]]
    unknown = imm.GetFigureClusterRequest(project_name=project, dataset_name=dataset, object_id=wanted[1])
    assert sdk_error(lambda: client.get_figure_cluster(unknown)).code == "ResourceNotFound"
    too_many = imm.BatchGetFigureClusterRequest(
        project_name=project, dataset_name=dataset, object_ids=[f"Cluster-{n}" for n in range(101)]
    )
    assert sdk_error(lambda: client.batch_get_figure_cluster(too_many)).code == "LimitExceeded"


def test_simple_query_lists_the_photos_of_one_person_in_pages(library: Library):
    client, project, dataset = library.client, library.project, library.dataset
    person = all_people(client, project, dataset)[2]
    pages = []
    query = imm.SimpleQuery(field="Figures.FigureClusterId", operation="eq", value=person.object_id)
    token = None
    while True:
        body = client.simple_query(
            imm.SimpleQueryRequest(
                project_name=project, dataset_name=dataset, query=query, max_results=3, next_token=token
            )
        ).body
        assert body.total_hits == 4
        pages.append(body.files)
        token = body.next_token
        if not token:
            break
    assert [len(page) for page in pages] == [3, 1]
    listed = [file for page in pages for file in page]
    assert len({file.uri for file in listed}) == 4
    assert all(person.object_id in {f.figure_cluster_id for f in file.figures} for file in listed)
    indexed = [library.people.uri(name) for name in GROUP_NAMES]  # one request: files in this order
    assert [file.uri for file in listed] == sorted((f.uri for f in listed), key=indexed.index, reverse=True)

    mirrored = library.people.uri("group-mirrored.jpg")
    both = imm.SimpleQuery(
        operation="and",
        sub_queries=[
            query,
            imm.SimpleQuery(
                operation="or",
                sub_queries=[
                    imm.SimpleQuery(field="URI", operation="eq", value=mirrored),
                    imm.SimpleQuery(
                        field="URI", operation="prefix", value=mirrored.rsplit("/", 1)[0] + "/group-s"
                    ),
                ],
            ),
        ],
    )
    body = client.simple_query(
        imm.SimpleQueryRequest(
            project_name=project,
            dataset_name=dataset,
            query=both,
            sort="URI",
            order="asc",
            with_fields=["URI"],
        )
    ).body
    assert [file.uri for file in body.files] == sorted([mirrored, library.people.uri("group-small.jpg")])
    assert body.files[0].figures is None or body.files[0].figures == []
    unsupported = imm.SimpleQueryRequest(
        project_name=project,
        dataset_name=dataset,
        query=imm.SimpleQuery(field="Size", operation="gt", value="1"),
    )
    error = sdk_error(lambda: client.simple_query(unsupported))
    assert error.code == "InvalidArgument" and "Size" in error.message


def test_search_image_names_the_person_of_each_face(library: Library):
    client, project, dataset = library.client, library.project, library.dataset
    body = client.search_image_figure_cluster(
        imm.SearchImageFigureClusterRequest(
            project_name=project, dataset_name=dataset, source_uri=library.people.uri("probe-group.jpg")
        )
    ).body
    assert len(body.clusters) == 6
    found = faces(client, project, dataset, [library.people.uri("group.jpg")])[
        library.people.uri("group.jpg")
    ]
    cluster_at = {  # the probe is the group photo at 0.9 scale: the face at (x, y) there is at (x/0.9, y/0.9)
        figure.figure_cluster_id: (figure.boundary.left, figure.boundary.top) for figure in found
    }
    for match in body.clusters:
        assert 0.5 <= match.similarity <= 1
        left, top = cluster_at[match.cluster_id]
        assert abs(match.boundary.left / 0.9 - left) < 20 and abs(match.boundary.top / 0.9 - top) < 20
    assert len({match.cluster_id for match in body.clusters}) == 6

    stranger = client.search_image_figure_cluster(
        imm.SearchImageFigureClusterRequest(
            project_name=project, dataset_name=dataset, source_uri=library.people.uri("probe-portrait.jpg")
        )
    ).body
    assert stranger.clusters == [], "a face like nobody in the dataset matches no cluster"
    refused = imm.SearchImageFigureClusterRequest(
        project_name=project, dataset_name=dataset, source_uri="http://example.com/a.jpg"
    )
    assert sdk_error(lambda: client.search_image_figure_cluster(refused)).code == "InvalidArgument"
