"""What goes into the engine (a change) and what comes out (a result). Plain immutable values."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

FaceId = str | int
ImageId = str | int


class ClusteringInputError(ValueError):
    """The change cannot be applied (unknown cluster, duplicate face, bad embedding, ...).

    Raised before the state is touched, so a rejected change leaves the state exactly as it was.
    """


@dataclass(frozen=True)
class NewFace:
    """A face to cluster: its id, its embedding, how good it is (0-1) and the image it comes from."""

    face_id: FaceId
    embedding: np.ndarray
    image_id: ImageId
    quality: float = 1.0


@dataclass(frozen=True)
class Move:
    """The user put a face into a cluster (``cluster_id``) or took it out of its cluster (``None``).

    Moving into a cluster id the state does not know yet creates that cluster (a person the user started).
    """

    face_id: FaceId
    cluster_id: str | None


@dataclass(frozen=True)
class Merge:
    """The user merged ``sources`` into ``target``: their faces move to ``target``; the sources disappear."""

    target: str
    sources: tuple[str, ...]


@dataclass(frozen=True)
class Change:
    """Everything that happened to a dataset since the last update.

    Applied in this order: removals, user merges (in the order given), user moves (in the order given; a
    later move of the same face wins), then the added faces, which are clustered together with the
    independent faces near them.
    """

    added: Sequence[NewFace] = ()
    removed: Sequence[FaceId] = ()
    moved: Sequence[Move] = ()
    merged: Sequence[Merge] = ()
    renamed: dict[str, str | None] = field(default_factory=dict)  # cluster id -> user name (None clears)


@dataclass(frozen=True)
class FaceOutcome:
    """Where a touched face now belongs (``cluster_id`` None = independent) and how sure the engine is."""

    face_id: FaceId
    cluster_id: str | None
    confidence: float
    previous_cluster_id: str | None = None


@dataclass(frozen=True)
class ClusterOutcome:
    """A cluster that exists after the update and was created or changed by it."""

    cluster_id: str
    face_count: int
    image_count: int
    name: str | None
    cover_face_id: FaceId  # suggestion: its best-quality face (the oldest among equals)


@dataclass(frozen=True)
class MergeOutcome:
    survivor: str
    absorbed: tuple[str, ...]
    automatic: bool  # False when the user asked for it


@dataclass(frozen=True)
class Result:
    """Everything a task needs to write and to notify.

    ``faces`` lists every face whose cluster was decided or changed by this update (added faces, faces the
    user moved, independent faces reconsidered, and the members of absorbed clusters), sorted by face id.
    ``clusters`` describes every surviving cluster that was created, grew or shrank.
    """

    faces: tuple[FaceOutcome, ...]
    created: tuple[str, ...]
    grown: tuple[str, ...]
    shrunk: tuple[str, ...]
    merged: tuple[MergeOutcome, ...]
    deleted: tuple[str, ...]
    clusters: tuple[ClusterOutcome, ...]
    removed_faces: int = 0

    @property
    def faces_assigned(self) -> int:
        return sum(1 for f in self.faces if f.cluster_id is not None)
