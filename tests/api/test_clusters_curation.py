"""Curating people through the official SDK on a live server, SQLite and PostgreSQL: rename (with a stale
and a current MetaLockVersion), choose a cover, move faces, index more, delete photos until a person is
gone, merge -- each followed by a clustering task that must keep what the user did."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from alibabacloud_imm20200930 import models as imm
from live_immray import sdk_error
from people_photos import GROUP, PORTRAITS
from people_testkit import People, all_people, cluster, faces, merge, photos_of, who_is_who

GROUP_NAMES = [copy.name for copy in GROUP]
PORTRAIT_NAMES = [copy.name for copy in PORTRAITS]


@dataclass
class Curated:
    people: People
    project: str
    dataset: str
    identity: dict[tuple[str, str], str]  # (photo name, FigureId) -> person

    @property
    def client(self):
        return self.people.client

    def get(self, object_id: str) -> imm.FigureCluster:
        return self.client.get_figure_cluster(
            imm.GetFigureClusterRequest(
                project_name=self.project, dataset_name=self.dataset, object_id=object_id
            )
        ).body.figure_cluster

    def update(self, **fields) -> None:
        self.client.update_figure_cluster(
            imm.UpdateFigureClusterRequest(
                project_name=self.project,
                dataset_name=self.dataset,
                figure_cluster=imm.FigureClusterForReq(**fields),
            )
        )

    def faces(self, names: list[str]) -> dict[tuple[str, str], imm.Figure]:
        """(photo name, FigureId) -> the face as GetFileMeta shows it now."""
        by_uri = {self.people.uri(name): name for name in names}
        found = faces(self.client, self.project, self.dataset, list(by_uri))
        return {(by_uri[uri], f.figure_id): f for uri, figures in found.items() for f in figures}

    def cluster_of(self) -> dict[str, str]:
        """person -> the cluster most of their faces are in."""
        votes: dict[str, dict[str, int]] = {}
        for key, face in self.faces(GROUP_NAMES).items():
            person = self.identity[key]
            votes.setdefault(person, {}).setdefault(face.figure_cluster_id, 0)
            votes[person][face.figure_cluster_id] += 1
        return {person: max(counts, key=counts.get) for person, counts in votes.items()}

    def move(self, name: str, figure_id: str, cluster_id: str) -> None:
        self.client.update_file_meta(
            imm.UpdateFileMetaRequest(
                project_name=self.project,
                dataset_name=self.dataset,
                file=imm.InputFile(
                    uri=self.people.uri(name),
                    figures=[
                        imm.InputFileFigures(
                            figure_id=figure_id, figure_cluster_id=cluster_id, figure_type="face"
                        )
                    ],
                ),
            )
        )


@pytest.fixture(scope="module")
def curated(people_server: People) -> Curated:
    project, dataset = people_server.new_dataset()
    people_server.index(project, dataset, GROUP_NAMES)
    cluster(people_server.client, project, dataset)
    return Curated(people_server, project, dataset, who_is_who(people_server, project, dataset, GROUP_NAMES))


def test_bad_requests_are_refused_by_name(curated: Curated):
    client, project, dataset = curated.client, curated.project, curated.dataset
    one, two = [p.object_id for p in all_people(client, project, dataset)[:2]]

    def update_error(**fields):
        request = imm.UpdateFigureClusterRequest(
            project_name=project, dataset_name=dataset, figure_cluster=imm.FigureClusterForReq(**fields)
        )
        return sdk_error(lambda: client.update_figure_cluster(request))

    assert update_error(object_id="Cluster-00000000-0000-4000-8000-000000000000").code == "ResourceNotFound"
    assert update_error(name="x").code == "InvalidArgument"  # no ObjectId
    assert update_error(object_id=one, name="x" * 513).code == "InvalidArgument"
    assert update_error(object_id=one, meta_lock_version=-1).code == "InvalidArgument"
    foreign = curated.get(two).cover.figures[0].figure_id
    error = update_error(
        object_id=one,
        cover=imm.FigureClusterForReqCover(figures=[imm.FigureClusterForReqCoverFigures(figure_id=foreign)]),
    )
    assert error.code == "InvalidArgument" and "not in the cluster" in error.message
    raw = curated.people.live.post(
        "UpdateFigureCluster",
        {
            "ProjectName": project,
            "DatasetName": dataset,
            "FigureCluster": f'{{"ObjectId":"{one}","FaceCount":9}}',
        },
    )
    assert raw.status_code == 400 and "FaceCount" in raw.json()["Message"]
    assert curated.get(one).meta_lock_version == 0, "nothing refused changed the cluster"

    def merge_error(**fields):
        request = imm.CreateFigureClustersMergingTaskRequest(
            project_name=project, dataset_name=dataset, **fields
        )
        return sdk_error(lambda: client.create_figure_clusters_merging_task(request)).code

    assert merge_error(from_=one, froms=[two], to=two) == "InvalidArgument"
    assert merge_error(to=two) == "InvalidArgument"
    assert merge_error(from_=one, to=one) == "InvalidArgument"
    assert merge_error(from_="Cluster-00000000-0000-4000-8000-000000000000", to=one) == "ResourceNotFound"
    assert merge_error(froms=[f"Cluster-{n}" for n in range(101)], to=one) == "LimitExceeded"
    topic = imm.Notification(mns=imm.MNS(topic_name="nobody-maps-this"))
    assert merge_error(from_=one, to=two, notification=topic) == "InvalidArgument"

    def clustering_error(**fields):
        request = imm.CreateFigureClusteringTaskRequest(project_name=project, **fields)
        return sdk_error(lambda: client.create_figure_clustering_task(request)).code

    assert clustering_error(dataset_name="nobody") == "ResourceNotFound"
    assert clustering_error(dataset_name=dataset, user_data="x" * 2049) == "InvalidArgument"
    assert len(all_people(client, project, dataset)) == 6, "no refused merge ran"


def test_curation_survives_every_later_clustering_task(curated: Curated):
    client, project, dataset = curated.client, curated.project, curated.dataset
    cluster_of = curated.cluster_of()
    persons = sorted(cluster_of)
    alice, bob, carol, dave = persons[:4]

    # Rename: the current MetaLockVersion wins, a stale one is refused and changes nothing.
    curated.update(object_id=cluster_of[alice], name="Alice", meta_lock_version=0)
    error = sdk_error(
        lambda: curated.update(object_id=cluster_of[alice], name="Mallory", meta_lock_version=0)
    )
    assert error.code == "OperationConflict" and error.status_code == 409
    curated.update(object_id=cluster_of[alice], custom_labels={"team": "red"}, custom_id="a-1")
    shown = curated.get(cluster_of[alice])
    assert (shown.name, shown.meta_lock_version, shown.custom_labels, shown.custom_id) == (
        "Alice",
        2,
        {"team": "red"},
        "a-1",
    )
    labelled = client.query_figure_clusters(
        imm.QueryFigureClustersRequest(project_name=project, dataset_name=dataset, custom_labels="team=red")
    ).body.figure_clusters
    assert [p.object_id for p in labelled] == [cluster_of[alice]]

    # Cover: Alice's worst face, chosen by the user.
    alice_faces = {k: f for k, f in curated.faces(GROUP_NAMES).items() if curated.identity[k] == alice}
    worst_key = min(alice_faces, key=lambda k: alice_faces[k].face_quality)
    curated.update(
        object_id=cluster_of[alice],
        cover=imm.FigureClusterForReqCover(
            figures=[imm.FigureClusterForReqCoverFigures(figure_id=worst_key[1])]
        ),
    )
    cover = curated.get(cluster_of[alice]).cover
    assert cover.uri == curated.people.uri(worst_key[0]) and cover.figures[0].figure_id == worst_key[1]

    # Move one of Bob's faces to Carol, take one of Dave's out of every cluster; the next task does it.
    faces_now = curated.faces(GROUP_NAMES)
    moved = next(k for k in faces_now if curated.identity[k] == bob and k[0] == "group-small.jpg")
    out = next(k for k in faces_now if curated.identity[k] == dave and k[0] == "group.jpg")
    curated.move(moved[0], moved[1], cluster_of[carol])
    curated.move(out[0], out[1], "figure-cluster-id-independent")
    assert curated.faces([moved[0]])[moved].figure_cluster_id == cluster_of[bob], "applied by the next task"
    cluster(client, project, dataset)
    now = curated.faces(GROUP_NAMES)
    assert now[moved].figure_cluster_id == cluster_of[carol]
    assert now[out].figure_cluster_id == "figure-cluster-id-independent"
    counts = {p.object_id: (p.face_count, p.image_count) for p in all_people(client, project, dataset)}
    assert counts[cluster_of[bob]] == (3, 3) and counts[cluster_of[carol]] == (5, 4)
    assert counts[cluster_of[dave]] == (3, 3) and counts[cluster_of[alice]] == (4, 4)

    # Index more: a new person appears; everyone else keeps id, name, cover and the user's moves.
    curated.people.index(project, dataset, PORTRAIT_NAMES)
    cluster(client, project, dataset)
    after = {p.object_id: p for p in all_people(client, project, dataset)}
    assert set(cluster_of.values()) < set(after) and len(after) == 7
    (newcomer,) = set(after) - set(cluster_of.values())
    assert (after[newcomer].face_count, after[newcomer].image_count) == (3, 3)
    assert after[cluster_of[alice]].name == "Alice" and after[cluster_of[alice]].meta_lock_version == 3
    assert after[cluster_of[alice]].cover.figures[0].figure_id == worst_key[1], "the user's cover stays"
    now = curated.faces(GROUP_NAMES)
    assert (
        now[moved].figure_cluster_id == cluster_of[carol]
        and now[out].figure_cluster_id == "figure-cluster-id-independent"
    )
    assert {
        p.object_id: (p.face_count, p.image_count) for p in after.values() if p.object_id != newcomer
    } == counts

    # Delete the newcomer's photos: the cluster shrinks, then goes with its last face.
    client.batch_delete_file_meta(
        imm.BatchDeleteFileMetaRequest(
            project_name=project,
            dataset_name=dataset,
            uris=[curated.people.uri(n) for n in PORTRAIT_NAMES[:2]],
        )
    )
    cluster(client, project, dataset)
    left = curated.get(newcomer)
    assert (left.face_count, left.image_count) == (1, 1)
    assert left.cover.uri == curated.people.uri(PORTRAIT_NAMES[2])
    client.delete_file_meta(
        imm.DeleteFileMetaRequest(
            project_name=project, dataset_name=dataset, uri=curated.people.uri(PORTRAIT_NAMES[2])
        )
    )
    cluster(client, project, dataset)
    assert sdk_error(lambda: curated.get(newcomer)).code == "ResourceNotFound"
    assert len(all_people(client, project, dataset)) == 6

    # Merge Bob into Alice: Bob's cluster goes, Alice has every face of both, and stays so.
    merge(client, project, dataset, cluster_of[alice], [cluster_of[bob]])
    assert sdk_error(lambda: curated.get(cluster_of[bob])).code == "ResourceNotFound"
    theirs = {k for k in curated.identity if curated.identity[k] in (alice, bob) and k != moved}
    photos = {name for name, _ in theirs}
    merged = curated.get(cluster_of[alice])
    assert (merged.name, merged.face_count, merged.image_count) == ("Alice", 7, len(photos))
    listed = {f.uri for f in photos_of(client, project, dataset, cluster_of[alice])}
    assert listed == {curated.people.uri(name) for name in photos}
    now = curated.faces(GROUP_NAMES)
    assert {now[key].figure_cluster_id for key in theirs} == {cluster_of[alice]}
    cluster(client, project, dataset)
    again = curated.get(cluster_of[alice])
    assert (again.face_count, again.image_count, again.name) == (7, len(photos), "Alice")
    assert len(all_people(client, project, dataset)) == 5
