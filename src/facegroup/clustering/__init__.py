"""Face embeddings plus the previous state in, cluster changes out. Pure: numpy and faiss, no I/O.

    engine = Engine(ClusteringConfig())
    state = engine.new_state(salt=dataset_id)          # or ClusterState.from_bytes(blob)
    result = engine.update(state, Change(added=[NewFace(face_id, embedding, image_id, quality)]))
    blob = state.to_bytes()                            # keep it with the dataset

See ``engine`` for the contract, ``incremental`` for how an update works, ``linkage`` for the algorithm.
"""

from facegroup.clustering.config import ClusteringConfig
from facegroup.clustering.engine import Engine
from facegroup.clustering.ids import IdFactory, default_cluster_id
from facegroup.clustering.state import ClusterState
from facegroup.clustering.types import (
    Change,
    ClusteringInputError,
    ClusterOutcome,
    FaceOutcome,
    Merge,
    MergeOutcome,
    Move,
    NewFace,
    Result,
)

__all__ = [
    "Change",
    "ClusterOutcome",
    "ClusterState",
    "ClusteringConfig",
    "ClusteringInputError",
    "Engine",
    "FaceOutcome",
    "IdFactory",
    "Merge",
    "MergeOutcome",
    "Move",
    "NewFace",
    "Result",
    "default_cluster_id",
]
