"""Records what an update does to the state, and turns that record into the ``Result``.

Every change of a face's cluster goes through ``Journal.assign``, so the result can list exactly the faces
whose cluster changed, and which clusters grew, shrank, merged or vanished, without comparing whole states.
"""

from __future__ import annotations

import heapq

import numpy as np

from immray.clustering.config import ClusteringConfig
from immray.clustering.smoothing import forget
from immray.clustering.state import INDEPENDENT, ClusterState, face_key
from immray.clustering.types import ClusterOutcome, FaceOutcome, MergeOutcome, Result

_BLOCK = 32_768


class Journal:
    def __init__(self, state: ClusterState) -> None:
        self.state = state
        self.before: dict[int, int | None] = {}  # row -> cluster code before the update (None: new face)
        # Rows from this one on were added by this update (add_faces appends them in face-id order); they
        # are tracked as a range, not row by row, which matters when a million faces arrive at once.
        self.new_from: int | None = None
        self.always_report: set[int] = set()  # new faces and faces the user moved
        self.may_vanish: set[int] = set()  # besides shrunk clusters, clusters that may end up empty
        self.created: list[int] = []
        self.grown: set[int] = set()
        self.shrunk: set[int] = set()
        self.merges: list[tuple[int, list[int], bool]] = []
        self.removed = 0

    def note_new(self, rows: np.ndarray) -> None:
        if len(rows):
            assert np.array_equal(rows, np.arange(rows[0], rows[0] + len(rows))), "new rows are a range"
            self.new_from = int(rows[0])

    def assign(self, rows: np.ndarray, codes: np.ndarray | int) -> None:
        """Put faces into clusters ``codes`` (or INDEPENDENT), remembering where they were."""
        rows = np.asarray(rows, np.int64)
        if not len(rows):
            return
        codes = np.broadcast_to(np.asarray(codes, np.int64), rows.shape)
        old = self.state.cluster.data[rows]
        known = rows < self.new_from if self.new_from is not None else np.ones(len(rows), bool)
        for row, prev in zip(rows[known].tolist(), old[known].tolist(), strict=True):
            self.before.setdefault(row, prev)
        moving = old != codes
        self.shrunk.update(np.unique(old[moving & (old >= 0)]).tolist())
        self.grown.update(np.unique(codes[moving & (codes >= 0)]).tolist())
        self.state.assign(rows[moving], codes[moving])

    def remove(self, rows: np.ndarray) -> None:
        """Forget faces for good: out of their clusters, out of the index, out of neighbour lists."""
        st = self.state

        def drop(rows: np.ndarray) -> None:
            self.assign(rows, INDEPENDENT)
            st.alive.data[rows] = False
            assert st.index is not None
            st.index.remove(rows)

        forget(st, rows, drop)
        dead = set(rows.tolist())
        st.apart = {(r, c) for r, c in st.apart if r not in dead}
        self.removed += len(rows)

    def _live(self, code: int) -> bool:
        return self.state.code_of.get(self.state.cluster_ids[code]) == code

    def drop_empty_clusters(self) -> None:
        """Delete the clusters this update emptied (only those that lost faces are looked at)."""
        st = self.state
        for code in sorted(self.shrunk | self.may_vanish):
            if self._live(code) and st.counts.data[code] == 0:
                st.drop_cluster(code)

    # --- the result --------------------------------------------------------------------------------------

    def confidence(self, rows: np.ndarray, cfg: ClusteringConfig) -> np.ndarray:
        """Mean similarity of each face to the rest of its cluster, scaled to 0-1; 1 for the user's choices,
        0 for independent faces (no cluster to be sure about)."""
        st = self.state
        out = np.zeros(len(rows))
        codes = st.cluster.data[rows]
        inside = codes >= 0
        where = np.flatnonzero(inside)
        for lo in range(0, len(where), _BLOCK):  # in blocks, to bound memory at a million faces
            part = where[lo : lo + _BLOCK]
            assert st.sums is not None
            vec = st.smoothed(rows[part]).astype(np.float64)
            dots = np.einsum("ij,ij->i", vec, st.sums.data[codes[part]])
            n = st.counts.data[codes[part]].astype(np.float64)
            mean_other = np.where(n > 1, (dots - 1.0) / np.maximum(n - 1, 1), 1.0)
            out[part] = cfg.confidence(mean_other)
        out[st.pinned.data[rows] & inside] = 1.0
        return np.round(out, 4)

    def _cluster_outcomes(self, codes: list[int]) -> list[ClusterOutcome]:
        st = self.state
        if not codes:
            return []
        rows = st.members(codes)
        cl = st.cluster.data[rows]
        order = np.argsort(cl, kind="stable")  # stable: rows stay in order within a cluster
        rows, cl = rows[order], cl[order]
        starts = np.searchsorted(cl, codes)
        ends = np.searchsorted(cl, codes, side="right")
        out = []
        for code, lo, hi in zip(codes, starts.tolist(), ends.tolist(), strict=True):
            members = rows[lo:hi]  # in row order: oldest first
            # Cover suggestion: the best-quality face, the oldest among equals (a stable choice).
            best = members[int(np.argmax(st.quality.data[members]))]
            out.append(
                ClusterOutcome(
                    cluster_id=st.cluster_ids[code],
                    face_count=int(hi - lo),
                    image_count=int(len(np.unique(st.image.data[members]))),
                    name=st.names[code],
                    cover_face_id=st.face_ids[best],
                )
            )
        return out

    def result(self, cfg: ClusteringConfig, *, report_all: bool = False) -> Result:
        st = self.state
        touched = [
            r
            for r, prev in self.before.items()
            if st.alive.data[r] and (report_all or r in self.always_report or prev != st.cluster.data[r])
        ]
        touched.sort(key=lambda r: face_key(st.face_ids[r]))
        added = range(len(st.face_ids))[self.new_from :] if self.new_from is not None else range(0)
        rows = list(heapq.merge(added, touched, key=lambda r: face_key(st.face_ids[r])))
        conf = self.confidence(np.array(rows, np.int64), cfg)
        faces = []
        for row, c in zip(rows, conf.tolist(), strict=True):
            code, prev = int(st.cluster.data[row]), self.before.get(row)
            faces.append(
                FaceOutcome(
                    face_id=st.face_ids[row],
                    cluster_id=None if code == INDEPENDENT else st.cluster_ids[code],
                    confidence=c,
                    previous_cluster_id=None if prev is None or prev == INDEPENDENT else st.cluster_ids[prev],
                )
            )
        live = self._live
        created = [c for c in self.created if live(c)]
        absorbed = {a for _, group, _ in self.merges for a in group}
        fresh = set(self.created)
        grown = sorted(c for c in self.grown if live(c) and c not in fresh)
        shrunk = sorted(c for c in self.shrunk if live(c) and c not in fresh)
        gone = self.shrunk | self.may_vanish
        deleted = sorted(c for c in gone if not live(c) and c not in absorbed and c not in fresh)
        survivors = {s for s, _, _ in self.merges if live(s)}
        described = sorted(set(created) | set(grown) | set(shrunk) | survivors)
        ids = st.cluster_ids
        return Result(
            faces=tuple(faces),
            created=tuple(ids[c] for c in created),
            grown=tuple(ids[c] for c in grown),
            shrunk=tuple(ids[c] for c in shrunk),
            merged=tuple(
                MergeOutcome(survivor=ids[s], absorbed=tuple(ids[a] for a in group), automatic=auto)
                for s, group, auto in self.merges
            ),
            deleted=tuple(ids[c] for c in deleted),
            clusters=tuple(self._cluster_outcomes(described)),
            removed_faces=self.removed,
        )
