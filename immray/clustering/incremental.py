"""Clustering the faces of one update against the clusters that already exist.

The work is local. The added faces look up their nearest neighbours in the index (one batched search, see
``neighbours``); independent faces found among them wake up and bring the neighbours they
already list, a few hops deep. The local problem is then:

* units: the active faces (one unit each) and every existing cluster some active face came close to,
  carried as (sum of smoothed vectors, size), so a cluster of 10,000 faces costs one vector;
* edges: the neighbour hits, plus a pair for any two clusters that are both close to one active face
  (the only way two existing clusters get compared: new evidence between them);
* constraints: faces of one image, faces the user took out of a cluster, different user names, the strict
  bar for joining two existing clusters, and the cohesion check for joining one.

Average linkage runs over that problem; each resulting group is then read back: a group holding existing
clusters keeps the id of the named (else the largest, else the oldest) one and absorbs the rest; a group of
only new faces becomes a cluster if it has ``min_faces`` good faces, otherwise its faces stay independent
until a later update brings them company.

With an empty state every face is new, and the same code is the batch clustering of a whole dataset.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from immray.clustering.config import ClusteringConfig
from immray.clustering.ids import IdFactory
from immray.clustering.journal import Journal
from immray.clustering.linkage import LinkageConstraints, average_linkage
from immray.clustering.smoothing import search
from immray.clustering.state import INDEPENDENT, ClusterState, face_key

# Given the candidate new clusters (arrays of rows), say which existing empty cluster code each one should
# take over, or None for a fresh id. The full re-cluster uses this to keep ids by overlap.
Adopter = Callable[[list[np.ndarray]], list[int | None]]


def pairs_within_groups(keys: np.ndarray, values: np.ndarray) -> np.ndarray:
    """All (values[i], values[j]) with i < j and keys[i] == keys[j], vectorised (keys need not be sorted)."""
    order = np.argsort(keys, kind="stable")
    keys, values = keys[order], values[order]
    out = []
    for offset in range(1, len(keys)):
        same = keys[offset:] == keys[:-offset]
        if not same.any():
            break  # in sorted keys, a run of length L has matches at every offset < L
        out.append(np.stack([values[:-offset][same], values[offset:][same]], axis=1))
    return np.concatenate(out) if out else np.zeros((0, 2), values.dtype)


def _wake(state: ClusterState, new_rows: np.ndarray, cfg: ClusteringConfig, first_hits):
    """The active faces (new ones plus the independent faces near them) and the neighbour pairs among them.

    Independent faces among the neighbour hits of an active face (all above the neighbour floor) wake up,
    and so do the independent faces in their own neighbour lists, up to ``reconsider_hops`` deep. Woken faces bring the neighbours
    they already list (no new search): their closest faces are in those lists, and the new faces near
    them found them from the other side.
    """
    active = np.unique(new_rows)
    src, dst, sim = first_hits
    srcs, dsts = [src], [dst]
    for _hop in range(cfg.reconsider_hops):
        loose = (
            (state.cluster.data[dst] == INDEPENDENT) & ~state.pinned.data[dst] & (sim >= cfg.neighbour_floor)
        )
        frontier = np.setdiff1d(dst[loose], active)
        if not len(frontier):
            break
        active = np.union1d(active, frontier)
        listed = state.nbr.data[frontier]
        used = listed >= 0
        src = np.repeat(frontier, listed.shape[1])[used.ravel()]
        dst = listed[used]
        sim = state.nbr_sim.data[frontier][used]
        srcs.append(src)
        dsts.append(dst)
    if len(srcs) == 1:  # nobody woke (a first task: every face is new): no copy of a million faces' hits
        return active, srcs[0], dsts[0]
    return active, np.concatenate(srcs), np.concatenate(dsts)


class Hits:
    """The neighbour hits (src rows, dst rows, similarities) of the faces a caller just searched, handed to
    ``cluster_active_faces`` once: it takes them and the holder forgets them, so they are freed as soon as
    the clustering is done with them, not when the caller returns (a million faces' first task: ~200 MB)."""

    def __init__(self, src: np.ndarray, dst: np.ndarray, sim: np.ndarray) -> None:
        self._hits: tuple[np.ndarray, np.ndarray, np.ndarray] | None = (src, dst, sim)

    def take(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        hits, self._hits = self._hits, None
        if hits is None:
            raise RuntimeError("these hits were taken already")
        return hits


def cluster_active_faces(
    state: ClusterState,
    new_rows: np.ndarray,
    cfg: ClusteringConfig,
    journal: Journal,
    new_id: IdFactory,
    *,
    extra_cannot: np.ndarray | None = None,
    adopt: Adopter | None = None,
    first_hits: Hits | None = None,
) -> None:
    """Cluster ``new_rows`` (and the independent faces they wake) into the state, through the journal.

    ``first_hits`` are the neighbour hits of ``new_rows`` if the caller already searched them.
    """
    if state.index is None or not len(new_rows):
        return
    assert state.sums is not None
    hits = (
        first_hits.take()
        if first_hits is not None
        else search(state, np.unique(new_rows), cfg.neighbours, cfg.neighbour_floor)
    )
    active, src, dst = _wake(state, new_rows, cfg, hits)
    del hits
    n_active = len(active)

    # Units: active faces first, then the existing clusters they came close to.
    hit_codes = state.cluster.data[dst]
    codes = np.unique(hit_codes[hit_codes >= 0])
    code_unit = np.full(len(state.cluster_ids) + 1, -1, np.int32)  # +1: code -1 (independent) maps to -1
    code_unit[codes] = n_active + np.arange(len(codes))
    row_unit = code_unit[state.cluster.data]  # clustered rows -> their cluster's unit (or -1)
    row_unit[active] = np.arange(n_active)  # int32 units: half the memory of the edge lists

    us, ud = row_unit[src], row_unit[dst]
    del src, dst, hit_codes  # the edge lists below are what the linkage needs, at half the size
    ok = (us >= 0) & (ud >= 0) & (us < n_active)
    us, ud = us[ok], ud[ok]
    del ok
    to_cluster = ud >= n_active
    near = np.unique(np.stack([us[to_cluster], ud[to_cluster]], axis=1), axis=0).reshape(-1, 2)
    bridges = pairs_within_groups(near[:, 0], near[:, 1])  # two clusters close to one new face
    edges = np.empty((len(us) + len(bridges), 2), np.int32)
    edges[: len(us), 0], edges[: len(us), 1] = us, ud
    edges[len(us) :] = bridges
    del us, ud, to_cluster

    cannot = [np.zeros((0, 2), np.int64)]
    # Faces of one image never share a cluster: pairs among the active faces and the members of the
    # clusters in play (two existing clusters holding faces of one photo must not merge either).
    rows = np.union1d(active, state.members(codes.tolist()))
    cannot.append(row_unit[pairs_within_groups(state.image.data[rows], rows)])
    if state.apart:
        apart = np.array(sorted(state.apart), np.int64)
        cannot.append(np.stack([row_unit[apart[:, 0]], code_unit[apart[:, 1]]], axis=1))
    if extra_cannot is not None and len(extra_cannot):
        cannot.append(row_unit[np.asarray(extra_cannot, np.int64)])
    cannot_units = np.concatenate(cannot)
    cannot_units = cannot_units[(cannot_units >= 0).all(axis=1)]

    sums = np.empty((n_active + len(codes), state.sums.data.shape[1]), np.float32)
    state.smoothed(active, out=sums[:n_active])
    sums[n_active:] = state.sums.data[codes]
    counts = np.concatenate([np.ones(n_active), state.counts.data[codes]])
    established = np.r_[np.zeros(n_active, bool), np.ones(len(codes), bool)]
    names = np.full(len(counts), -1, np.int64)
    name_codes: dict[str, int] = {}
    for i, code in enumerate(codes.tolist()):
        if state.names[code] is not None:
            names[n_active + i] = name_codes.setdefault(state.names[code], len(name_codes))

    roots = average_linkage(
        sums,
        counts,
        edges,
        cfg.join_threshold,
        LinkageConstraints(
            cannot_link=cannot_units,
            established=established,
            name=names,
            strong_threshold=cfg.merge_bar,
            cohesion_margin=cfg.cohesion_margin,
            adopt_margin=cfg.adopt_margin,
        ),
        pair_penalty=cfg.pair_penalty,
        overwrite_sums=True,
    )
    del sums
    _apply_groups(state, active, codes, roots, cfg, journal, new_id, adopt)


def _survivor(state: ClusterState, codes: list[int]) -> int:
    """Named beats unnamed, then more faces, then older."""
    return min(codes, key=lambda c: (state.names[c] is None, -int(state.counts.data[c]), c))


def _apply_groups(
    state: ClusterState,
    active: np.ndarray,
    codes: np.ndarray,
    roots: np.ndarray,
    cfg: ClusteringConfig,
    journal: Journal,
    new_id: IdFactory,
    adopt: Adopter | None,
) -> None:
    n_active = len(active)
    order = np.argsort(roots, kind="stable")
    bounds = np.flatnonzero(np.diff(roots[order])) + 1
    good = state.quality.data[active] >= cfg.min_good_quality
    target = np.full(n_active, INDEPENDENT, np.int64)  # final cluster code of each active face
    candidates: list[np.ndarray] = []  # groups of new faces that may found a cluster (unit indices)
    for members in np.split(order, bounds):
        faces = members[members < n_active]
        if len(faces) == len(members):
            if int(good[faces].sum()) >= cfg.min_faces:
                candidates.append(faces)
            continue
        clusters = codes[members[members >= n_active] - n_active].tolist()
        keep = _survivor(state, clusters)
        absorbed = sorted(c for c in clusters if c != keep)
        if absorbed:
            journal.assign(state.members(absorbed), keep)
            state.apart = {(r, keep if c in absorbed else c) for r, c in state.apart}
            journal.merges.append((keep, absorbed, True))
            for c in absorbed:
                state.drop_cluster(c)
        target[faces] = keep

    adopted = adopt([active[f] for f in candidates]) if adopt and candidates else [None] * len(candidates)
    fresh = []
    for faces, code in zip(candidates, adopted, strict=True):
        if code is None:
            founder = min((state.face_ids[r] for r in active[faces].tolist()), key=face_key)
            fresh.append((face_key(founder), founder, faces))
        else:
            target[faces] = code
    for _, founder, faces in sorted(fresh, key=lambda x: x[0]):
        code = state.new_cluster(new_id(state.salt, state.created, founder))
        state.created += 1
        journal.created.append(code)
        target[faces] = code
    journal.assign(active, target)
