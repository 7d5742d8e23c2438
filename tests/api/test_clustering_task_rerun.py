"""A clustering run cut short between the engine and its commit leaves nothing behind, and running it again
gives exactly the clusters (ids included) the cut run was about to commit; Progress only moves forward.

Photos are indexed through the SDK on a live server (SQLite and PostgreSQL); the runs are the service the
task's job calls, with a stand-in for the job context that can pull the plug inside the final transaction.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
from alibabacloud_imm20200930 import models as imm
from people_photos import PORTRAITS
from people_testkit import People, all_people
from sqlalchemy import select

from immray.services.clustering_task import run_clustering
from immray.store import ClusteringState, Dataset, Figure, FigureCluster, Project

NAMES = ["group-small.jpg", *(copy.name for copy in PORTRAITS)]


class PowerCut(Exception):
    pass


class Run:
    """Stands in for the job context: records progress, and may fail inside the final transaction."""

    task_id = None

    def __init__(self, dataset_id: int, *, crash: bool) -> None:
        self.dataset_id = dataset_id
        self.crash = crash
        self.progress_seen: list[float] = []
        self.written: dict[int, str | None] | None = None
        self.result: Mapping[str, Any] | None = None

    def progress(self, percent: float) -> None:
        self.progress_seen.append(percent)

    def finish(self, session, result: Mapping[str, Any] | None = None) -> None:
        self.written = dict(
            session.execute(
                select(Figure.id, FigureCluster.object_id)
                .outerjoin(FigureCluster, FigureCluster.id == Figure.cluster_id)
                .where(Figure.dataset_id == self.dataset_id)
            ).all()
        )
        self.result = result
        if self.crash:
            raise PowerCut("the machine lost power before the commit")


def dataset_id(people: People, project: str, dataset: str) -> int:
    with people.live.db.read() as session:
        return session.scalar(
            select(Dataset.id).join(Project).where(Project.name == project, Dataset.name == dataset)
        )


def test_a_run_cut_before_its_commit_runs_again_to_the_same_clusters(people_server: People):
    min_faces = imm.WorkflowParameter(name="FigureClusterMinFaces", value="1")
    project, dataset = people_server.new_dataset(workflow_parameters=[min_faces])
    people_server.index(project, dataset, NAMES)
    db, key = people_server.live.db, dataset_id(people_server, project, dataset)

    cut = Run(key, crash=True)
    with pytest.raises(PowerCut):
        run_clustering(db, cut, key)
    assert cut.written and len(set(cut.written.values()) - {None}) == 7, (
        "six people of the group, one portrait"
    )
    assert all_people(people_server.client, project, dataset) == [], "nothing of the cut run was committed"
    with db.read() as session:
        assert session.get(ClusteringState, key) is None
        states = set(session.scalars(select(Figure.cluster_state).where(Figure.dataset_id == key)))
    assert states == {"unavailable"}

    again = Run(key, crash=False)
    assert run_clustering(db, again, key) == again.result == cut.result
    assert again.written == cut.written, "the same faces in clusters with the same ids"
    people = {p.object_id: p.face_count for p in all_people(people_server.client, project, dataset)}
    assert set(people) == set(cut.written.values()) - {None}
    assert sorted(people.values()) == [1, 1, 1, 1, 1, 1, 3]
    for run in (cut, again):
        assert run.progress_seen == sorted(run.progress_seen) and run.progress_seen[0] < run.progress_seen[-1]

    nothing_new = Run(key, crash=False)
    result = run_clustering(db, nothing_new, key)
    assert (result["ClustersCreated"], result["FacesAssigned"], result["ClustersUpdated"]) == (0, 0, 0)
