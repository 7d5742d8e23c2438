"""A full re-cluster of a dataset, e.g. after the embedding model changed: explicit, O(n log n), and
keeping cluster ids where it can.

The state is rebuilt from scratch (rows compacted, a fresh index). The user's decisions survive: faces the
user placed stay in their clusters (and those clusters take part as existing clusters), faces the user took
out stay out, and a face taken out of a cluster may not join the faces that were in it. Every other face is
clustered again as if new. Each resulting cluster then takes over the old cluster id it shares the most faces
with (greedy on overlap, one old id per new cluster), so names and covers follow their people; clusters that
match nothing get fresh ids, and old ids that find no successor are reported deleted.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from immray.clustering.changes import check_faces
from immray.clustering.config import ClusteringConfig
from immray.clustering.ids import IdFactory
from immray.clustering.incremental import Hits, cluster_active_faces
from immray.clustering.journal import Journal
from immray.clustering.smoothing import index_new_faces
from immray.clustering.state import INDEPENDENT, ClusterState
from immray.clustering.types import NewFace, Result


def _current_faces(state: ClusterState) -> list[NewFace]:
    rows = np.flatnonzero(state.alive.data)
    vectors = state.embeddings(rows) if len(rows) else np.zeros((0, 0), np.float32)
    return [
        NewFace(
            state.face_ids[r], vectors[i], state.image_ids[state.image.data[r]], float(state.quality.data[r])
        )
        for i, r in enumerate(rows.tolist())
    ]


def recluster(
    old: ClusterState,
    new: ClusterState,
    faces: list[NewFace] | None,
    cfg: ClusteringConfig,
    new_id: IdFactory,
) -> tuple[ClusterState, Result]:
    """Cluster every face again into ``new`` (an empty state); returns it and what changed relative to ``old``."""
    given = _current_faces(old) if faces is None else list(faces)
    given, vectors, quality = check_faces(given, None)
    known = [f.face_id in old for f in given]
    new.created = old.created
    if not given:
        gone = tuple(sorted(old.code_of, key=lambda c: old.code_of[c]))
        return new, Result((), (), (), (), (), gone, (), removed_faces=old.n_faces)
    rows = new.add_faces(
        [f.face_id for f in given], vectors, quality, [new.intern_image(f.image_id) for f in given]
    )
    src, dst, sim = index_new_faces(new, rows, cfg.neighbours, cfg.neighbour_floor)
    # The old clusters, empty for now, under their old codes' order so "older" still means older.
    old_codes = sorted(old.code_of.values())
    code_map = np.full(len(old.cluster_ids) + 1, INDEPENDENT, np.int64)
    for code in old_codes:
        code_map[code] = new.new_cluster(old.cluster_ids[code], old.names[code])
    before = np.full(len(rows), INDEPENDENT, np.int64)
    pinned = np.zeros(len(rows), bool)
    for i, (face, is_known) in enumerate(zip(given, known, strict=True)):
        if is_known:
            r = old.row_of[face.face_id]
            before[i] = code_map[old.cluster.data[r]]
            pinned[i] = old.pinned.data[r]
    new.pinned.data[:] = pinned
    new.assign(rows[pinned & (before >= 0)], before[pinned & (before >= 0)])
    new.apart = {
        (new.row_of[old.face_ids[r]], int(code_map[c]))
        for r, c in old.apart
        if old.face_ids[r] in new.row_of and code_map[c] >= 0
    }
    # Face-level form of "taken out of": the face may not join the faces that were in that cluster.
    extra = [
        (r, m) for r, c in sorted(new.apart) for m in np.flatnonzero(before == c).tolist() if not pinned[m]
    ]

    journal = Journal(new)
    journal.may_vanish = set(new.code_of.values())  # old clusters no new one takes over are deleted
    for i, is_known in enumerate(known):
        journal.before[i] = int(before[i]) if is_known else None
        if not is_known:
            journal.always_report.add(i)

    def adopt(groups: list[np.ndarray]) -> list[int | None]:
        """Each new group takes the free old cluster it overlaps most (greedy, ties to older / earlier)."""
        overlaps = []
        for g, members in enumerate(groups):
            for code, n in Counter(before[members][before[members] >= 0].tolist()).items():
                overlaps.append((-n, code, g))
        out: list[int | None] = [None] * len(groups)
        taken: set[int] = set()
        for _, code, g in sorted(overlaps):
            if out[g] is None and code not in taken and new.counts.data[code] == 0:
                out[g] = code
                taken.add(code)
        return out

    loose = rows[~pinned]
    from_loose = ~pinned[src]
    if from_loose.all():  # nothing pinned (the usual case): the hits as they are, no copy
        hits = Hits(src, dst, sim)
    else:
        hits = Hits(src[from_loose], dst[from_loose], sim[from_loose])
    del src, dst, sim, from_loose  # the clustering frees them once it has read them
    cluster_active_faces(
        new,
        loose,
        cfg,
        journal,
        new_id,
        extra_cannot=np.array(extra, np.int64).reshape(-1, 2),
        adopt=adopt,
        first_hits=hits,
    )
    journal.drop_empty_clusters()
    result = journal.result(cfg, report_all=True)
    dropped = sum(1 for f in old.face_ids if f in old and f not in new.row_of)
    return new, Result(
        faces=result.faces,
        created=result.created,
        grown=result.grown,
        shrunk=result.shrunk,
        merged=result.merged,
        deleted=result.deleted,
        clusters=result.clusters,
        removed_faces=dropped,
    )
