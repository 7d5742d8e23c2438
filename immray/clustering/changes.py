"""Checking a change against the state, then applying what the user did (removals, merges, moves, names).

``validate`` reads the state but never writes it and raises ``ClusteringInputError`` with a message naming the
offending item; only after it passes does anything get applied, so a bad change leaves the state untouched.
"""

from __future__ import annotations

import math

import numpy as np

from immray.clustering.journal import Journal
from immray.clustering.neighbours import BadEmbedding, normalise
from immray.clustering.state import INDEPENDENT, ClusterState, face_key
from immray.clustering.types import Change, ClusteringInputError, NewFace


def _is_id(value: object) -> bool:
    return isinstance(value, str | int) and not isinstance(value, bool)


def check_faces(faces: list[NewFace], dim: int | None) -> tuple[list[NewFace], np.ndarray, np.ndarray]:
    """New faces sorted by id, with their L2-normalised embeddings and qualities, or a clear error."""
    seen: set[object] = set()
    for face in faces:
        if not isinstance(face, NewFace):
            raise ClusteringInputError(f"added faces must be NewFace, got {type(face).__name__}")
        if not _is_id(face.face_id):
            raise ClusteringInputError(f"face id must be a str or int, got {face.face_id!r}")
        if not _is_id(face.image_id):
            raise ClusteringInputError(f"face {face.face_id!r}: image id must be a str or int")
        if face.face_id in seen:
            raise ClusteringInputError(f"face {face.face_id!r} is added twice")
        seen.add(face.face_id)
        q = face.quality
        if (
            not isinstance(q, int | float)
            or isinstance(q, bool)
            or not math.isfinite(q)
            or not 0.0 <= q <= 1.0
        ):
            raise ClusteringInputError(
                f"face {face.face_id!r}: quality must be a number within [0, 1], got {q!r}"
            )
    faces = sorted(faces, key=lambda f: face_key(f.face_id))
    if not faces:
        return faces, np.zeros((0, dim or 0), np.float32), np.zeros(0, np.float32)
    try:
        vectors = np.stack([np.asarray(f.embedding, dtype=np.float32) for f in faces])
    except (ValueError, TypeError) as exc:
        raise ClusteringInputError(f"embeddings must be numeric vectors of one length: {exc}") from exc
    if vectors.ndim != 2 or vectors.shape[1] == 0:
        raise ClusteringInputError("each embedding must be a non-empty 1-d vector")
    if dim is not None and vectors.shape[1] != dim:
        raise ClusteringInputError(f"embeddings have {vectors.shape[1]} dimensions, the dataset has {dim}")
    try:
        vectors = normalise(vectors, copy=False)  # the stack is this function's own
    except BadEmbedding as exc:
        raise ClusteringInputError(
            f"face {faces[exc.row].face_id!r}: embedding is zero or not finite"
        ) from None
    quality = np.array([f.quality for f in faces], np.float32)
    return faces, vectors, quality


def validate(state: ClusterState, change: Change) -> tuple[list[NewFace], np.ndarray, np.ndarray]:
    """Raise ClusteringInputError unless every part of ``change`` can be applied, in order, to ``state``."""
    if not isinstance(change, Change):
        raise ClusteringInputError(f"expected a Change, got {type(change).__name__}")
    removed = set()
    for fid in change.removed:
        if not _is_id(fid):
            raise ClusteringInputError(f"removed face id must be a str or int, got {fid!r}")
        removed.add(fid)
    clusters = set(state.code_of)
    for merge in change.merged:
        sources = tuple(merge.sources)
        if not isinstance(merge.target, str) or not sources or not all(isinstance(s, str) for s in sources):
            raise ClusteringInputError("a merge needs a target cluster id and at least one source cluster id")
        for cid in (merge.target, *sources):
            if cid not in clusters:
                raise ClusteringInputError(f"merge names unknown cluster {cid!r}")
        if merge.target in sources or len(set(sources)) != len(sources):
            raise ClusteringInputError(f"merge into {merge.target!r} lists a cluster twice")
        clusters -= set(sources)
    for move in change.moved:
        if not _is_id(move.face_id) or move.face_id not in state or move.face_id in removed:
            raise ClusteringInputError(
                f"cannot move face {move.face_id!r}: not a clustered face of this dataset"
            )
        if move.cluster_id is not None:
            if not isinstance(move.cluster_id, str) or not move.cluster_id:
                raise ClusteringInputError(
                    f"face {move.face_id!r}: target cluster id must be a non-empty str"
                )
            if move.cluster_id not in clusters and move.cluster_id in state.cluster_ids:
                raise ClusteringInputError(
                    f"cannot move face {move.face_id!r} into deleted cluster {move.cluster_id!r}"
                )
            clusters.add(move.cluster_id)
    for cid, name in change.renamed.items():
        if cid not in clusters:
            raise ClusteringInputError(f"cannot rename unknown cluster {cid!r}")
        if name is not None and not isinstance(name, str):
            raise ClusteringInputError(f"cluster {cid!r}: name must be a str or None")
    faces, vectors, quality = check_faces(list(change.added), state.dim)
    for face in faces:
        if face.face_id in removed:
            raise ClusteringInputError(f"face {face.face_id!r} is both added and removed")
        if face.face_id in state:
            raise ClusteringInputError(f"face {face.face_id!r} is already in the dataset")
    return faces, vectors, quality


def apply_user_changes(state: ClusterState, change: Change, journal: Journal) -> None:
    """Removals, then merges, then moves, then names; empty clusters are deleted at the end."""
    rows = [state.row_of[f] for f in change.removed if f in state]
    if rows:
        journal.remove(np.unique(np.array(rows, np.int64)))

    for merge in change.merged:
        target = state.code_of[merge.target]
        sources = [state.code_of[s] for s in merge.sources]
        journal.assign(state.members(sources), target)
        # Taken out of a source, the face may not join the target either, unless it is in it by now.
        redirected = {(r, target if c in sources else c) for r, c in state.apart}
        state.apart = {(r, c) for r, c in redirected if state.cluster.data[r] != c}
        journal.merges.append((target, sources, False))
        for code in sources:
            state.drop_cluster(code)

    for move in change.moved:
        row = state.row_of[move.face_id]
        old = int(state.cluster.data[row])
        if move.cluster_id is None:
            new = INDEPENDENT
        elif move.cluster_id in state.code_of:
            new = state.code_of[move.cluster_id]
        else:
            new = state.new_cluster(move.cluster_id)
            journal.created.append(new)
        journal.assign(np.array([row]), new)
        state.pinned.data[row] = True
        journal.always_report.add(row)
        if old >= 0 and old != new:
            state.apart.add((row, old))
        state.apart.discard((row, new))

    for cid, name in change.renamed.items():
        state.names[state.code_of[cid]] = name

    journal.drop_empty_clusters()
