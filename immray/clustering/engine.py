"""The one entry point: ``Engine(config).update(state, change) -> Result``.

``update`` applies a change to a dataset's state in place and says what happened; ``recluster`` rebuilds it
from scratch (an explicit, separate operation, e.g. after a model change). Both are deterministic: the same
state and change give the same result and the same bytes, whatever the order of faces inside the change,
because faces are processed in id order and every tie is broken by id. A change is checked completely before
anything is applied, so a rejected change (``ClusteringInputError``) leaves the state as it was.
"""

from __future__ import annotations

from collections.abc import Sequence

from immray.clustering.changes import apply_user_changes, validate
from immray.clustering.config import ClusteringConfig
from immray.clustering.ids import IdFactory, default_cluster_id
from immray.clustering.incremental import Hits, cluster_active_faces
from immray.clustering.journal import Journal
from immray.clustering.neighbours import IndexFactory, NeighbourIndex, exact_index
from immray.clustering.recluster import recluster
from immray.clustering.smoothing import index_new_faces
from immray.clustering.state import ClusterState
from immray.clustering.types import Change, ClusteringInputError, NewFace, Result


class Engine:
    def __init__(
        self,
        config: ClusteringConfig | None = None,
        id_factory: IdFactory = default_cluster_id,
        index_factory: IndexFactory = exact_index,
    ):
        # ``index_factory`` makes the neighbour index of a new state (and of a re-clustered one): where the
        # faces' vectors live. Exact and in memory by default; Milvus in the service.
        self.config = config or ClusteringConfig()
        self.new_id = id_factory
        self.index_factory = index_factory

    def new_state(self, salt: str = "") -> ClusterState:
        """An empty state for a new dataset; ``salt`` (e.g. the dataset id) seeds its cluster ids."""
        cfg = self.config
        return ClusterState(
            salt,
            index_factory=self.index_factory,
            smooth_k=cfg.smoothing_neighbours,
            smooth_sharpness=cfg.smoothing_sharpness,
            smooth_floor=cfg.neighbour_floor,
        )

    def load_state(self, blob: bytes, index: NeighbourIndex | None = None) -> ClusterState:
        """A saved state (``ClusterState.from_bytes``) whose index, if it needs a new one, is this engine's:
        ``index`` holds its faces' vectors already, or else the caller fills the fresh one (``fill_index``)."""
        return ClusterState.from_bytes(blob, index, index_factory=self.index_factory)

    def _config(self, min_faces: int | None) -> ClusteringConfig:
        if min_faces is not None and (
            not isinstance(min_faces, int) or isinstance(min_faces, bool) or min_faces < 1
        ):
            raise ClusteringInputError(f"min_faces must be a positive integer, got {min_faces!r}")
        return self.config.with_min_faces(min_faces)

    def update(self, state: ClusterState, change: Change, *, min_faces: int | None = None) -> Result:
        """Apply ``change`` to ``state`` (in place) and return what changed.

        ``min_faces`` overrides the config's MinFaces for this call (it is a per-dataset setting).
        """
        cfg = self._config(min_faces)
        faces, vectors, quality = validate(state, change)
        journal = Journal(state)
        apply_user_changes(state, change, journal)
        if faces:
            images = [state.intern_image(f.image_id) for f in faces]
            rows = state.add_faces([f.face_id for f in faces], vectors, quality, images)
            del vectors  # the index holds them now
            journal.note_new(rows)
            hits = Hits(*index_new_faces(state, rows, cfg.neighbours, cfg.neighbour_floor))
            cluster_active_faces(state, rows, cfg, journal, self.new_id, first_hits=hits)
        return journal.result(cfg)

    def recluster(
        self, state: ClusterState, faces: Sequence[NewFace] | None = None, *, min_faces: int | None = None
    ) -> Result:
        """Cluster the whole dataset again, keeping ids by overlap and the user's constraints.

        ``faces`` replaces every face (e.g. new embeddings after a model change; faces left out are
        removed); without it the stored embeddings are reused. ``state`` is replaced in place.
        """
        cfg = self._config(min_faces)
        fresh = self.new_state(state.salt)
        new, result = recluster(state, fresh, None if faces is None else list(faces), cfg, self.new_id)
        state.__dict__.update(new.__dict__)
        return result
