"""A dataset in a real store (SQLite) whose photos are "analysed" into synthetic faces through the indexing
service's own commit path, and clustering runs of the real task service."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlalchemy import select

from immray.faces.results import AnalyzedImage, Boundary, Face, HeadPose
from immray.services import indexing
from immray.services.clustering_task import StateCache, run_clustering
from immray.services.database import Database
from immray.settings import Settings
from immray.sources import SourceInfo
from immray.store import Dataset, Figure, File, Project

MODEL = "test-model"


def face(embedding: np.ndarray, i: int) -> Face:
    return Face(
        boundary=Boundary(10 + i, 20, 100, 120),
        confidence=0.99,
        quality=0.9,
        sharpness=0.9,
        head_pose=HeadPose(0.0, 0.0, 0.0),
        landmarks=(),
        embedding=embedding,
    )


@dataclass
class Run:
    """Stands in for the job context of a task: its settings and the actor's state cache."""

    settings: Settings
    state_cache: StateCache | None = None
    task_id: str | None = None
    result: Mapping[str, Any] | None = field(default=None)

    def progress(self, percent: float) -> None:
        pass

    def finish(self, session, result: Mapping[str, Any] | None = None) -> None:
        self.result = result


class DatasetKit:
    def __init__(self, db: Database, settings: Settings, project: str = "p", name: str = "d") -> None:
        self.db = db
        self.settings = settings
        with db.write() as session:
            found = session.scalar(select(Project).where(Project.name == project)) or Project(name=project)
            row = Dataset(
                project=found,
                name=name,
                workflow_parameters=[{"Name": "FigureClusterMinFaces", "Value": "2"}],
            )
            session.add(row)
            session.flush()
            self.dataset_id = row.id
        self.project, self.name = project, name

    def add_photo(self, embeddings: np.ndarray) -> int:
        """A photo whose analysis found faces with these embeddings, stored by the indexing service."""
        event = uuid.uuid4().hex
        with self.db.write() as session:
            row = File(
                dataset_id=self.dataset_id, uri=f"file:///photos/{uuid.uuid4().hex}.jpg", event_id=event
            )
            session.add(row)
            session.flush()
            file_id = row.id
        analyzed = AnalyzedImage(400, 300, "image/jpeg", [face(e, i) for i, e in enumerate(embeddings)])
        info = SourceInfo(size=1, fingerprint=uuid.uuid4().hex, filename="x.jpg")
        indexing._finish(self.db, file_id, event, info=info, analyzed=analyzed, embedding_model=MODEL)
        return file_id

    def cluster(self, cache: StateCache | None = None) -> dict[int, str | None]:
        run_clustering(self.db, Run(self.settings, cache), self.dataset_id)
        return self.assignments()

    def assignments(self) -> dict[int, str | None]:
        from immray.store import FigureCluster

        with self.db.read() as session:
            return dict(
                session.execute(
                    select(Figure.id, FigureCluster.object_id)
                    .outerjoin(FigureCluster, FigureCluster.id == Figure.cluster_id)
                    .where(Figure.dataset_id == self.dataset_id, Figure.deleted_at.is_(None))
                ).all()
            )

    def live_faces(self) -> list[int]:
        with self.db.read() as session:
            return list(
                session.scalars(
                    select(Figure.id).where(Figure.dataset_id == self.dataset_id, Figure.deleted_at.is_(None))
                )
            )
