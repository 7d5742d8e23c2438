"""Face embeddings plus the previous state in, cluster changes out. Pure: numpy, no I/O.

    engine = Engine(ClusteringConfig())
    state = engine.new_state(salt=dataset_id)          # or ClusterState.from_bytes(blob, index=...)
    result = engine.update(state, Change(added=[NewFace(face_id, embedding, image_id, quality)]),
                           min_faces=dataset_min_faces)
    blob = state.to_bytes()                            # keep it with the dataset (one LargeBinary)

- Vectors live in a ``NeighbourIndex`` (``neighbours``): ``ExactIndex`` (numpy, exact) by default, Milvus in the
  service, given as ``Engine(index_factory=...)``. The state's bytes hold no vectors: whoever loads a state
  hands ``from_bytes`` the index that holds them, or fills a fresh one (``indexed_rows``, ``fill_index``).
- ``Engine.update`` applies one change (faces added / removed, user moves, merges and names) in place and
  returns a ``Result``: each touched face's cluster and confidence, and the clusters created, grown, shrunk,
  merged (with the surviving id) and deleted, with their face and image counts. ``Engine.recluster`` is the
  separate, explicit full re-cluster (e.g. after a model change) that keeps ids by overlap.
- Deterministic: faces are handled in id order and every tie is broken by id, so the same state and change
  give the same result and the same state bytes. New cluster ids are ``Cluster-<uuid>`` with a UUID derived
  from the state's salt, a per-state counter and the founding face (``ids.default_cluster_id``); pass another
  ``id_factory`` to ``Engine`` to choose differently.
- Incremental: an update costs a nearest-neighbour search per added face plus work on the clusters it
  touches, not a re-clustering (see ``incremental``).
- Bad input raises ``ClusteringInputError`` before anything changes.

Modules: ``engine`` (entry point), ``changes`` (checking and applying user changes), ``incremental`` (how
new faces are clustered), ``linkage`` (the algorithm), ``smoothing`` (how faces are compared),
``neighbours`` (where vectors live: the index seam), ``state`` (what is remembered, and its bytes), ``journal``
(building the result), ``recluster``, ``metrics`` (pairwise and BCubed scores), ``config`` (every threshold,
with its measured default).
"""

from immray.clustering.config import ClusteringConfig
from immray.clustering.engine import Engine
from immray.clustering.ids import IdFactory, default_cluster_id
from immray.clustering.neighbours import ExactIndex, IndexFactory, NeighbourIndex, exact_index
from immray.clustering.state import ClusterState
from immray.clustering.types import (
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
    "ExactIndex",
    "FaceOutcome",
    "IdFactory",
    "IndexFactory",
    "Merge",
    "MergeOutcome",
    "Move",
    "NeighbourIndex",
    "NewFace",
    "Result",
    "default_cluster_id",
    "exact_index",
]
