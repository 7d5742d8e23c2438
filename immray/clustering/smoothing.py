"""Neighbour smoothing: each face is compared through its embedding pulled towards its closest neighbours.

    smoothed(x_i) = normalise(x_i + sum over j in top-k(i) with s_ij >= floor of s_ij^sharpness * x_j)

This is one mean-shift step with a narrow kernel: with sharpness 30 a neighbour at cosine 0.95 weighs 0.21,
one at the floor (0.93) 0.11, so a face moves a little towards the photos most like it (almost always the
same person) and not at all when it has no close neighbour (a one-photo person). Same-person faces end up
tighter than different-person faces; on LFW it is worth ~+0.7 BCubed F1 points over plain average linkage,
on both halves of random splits of the people alike. (It helps less on sparse data, where a face's closest
neighbours are more often someone else: hence the high floor.)

Each face keeps its top-k list (ids and similarities). Lists are maintained incrementally, so a face's
smoothed vector is the same as if the whole dataset had been processed at once: a new face enters the lists
of the existing faces it is closer to than their k-th neighbour (their clusters' sums are corrected), and
when a face is removed, the faces that listed it look up a replacement.
"""

from __future__ import annotations

import numpy as np

from immray.clustering.state import ClusterState, scatter_add

_SEARCH_BATCH = 65_536  # queries per index call, to bound the memory of the results


def search(state: ClusterState, rows: np.ndarray, k: int, floor: float):
    """Neighbour hits of ``rows`` in the index: (source row, neighbour row, similarity), self excluded,
    similarity >= ``floor``, in row order then best first."""
    assert state.index is not None
    srcs, dsts, sims = [], [], []
    for lo in range(0, len(rows), _SEARCH_BATCH):
        part = rows[lo : lo + _SEARCH_BATCH]
        sim, ids = state.index.search(state.embeddings(part), k + 1)
        src = np.repeat(part, ids.shape[1])
        dst, sim = ids.ravel(), sim.ravel()
        keep = (dst >= 0) & (dst != src) & (sim >= floor)
        srcs.append(src[keep])
        dsts.append(dst[keep])
        sims.append(sim[keep])
    if not srcs:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
    return np.concatenate(srcs), np.concatenate(dsts), np.concatenate(sims)


def _top_k(src: np.ndarray, dst: np.ndarray, sim: np.ndarray, rows: np.ndarray, k: int):
    """Per row of ``rows``: its k best (dst, sim), best first, ties to the lower id; -1 / 0 padded."""
    ids = np.full((len(rows), k), -1, np.int64)
    sims = np.zeros((len(rows), k), np.float32)
    if not len(src) or k == 0:
        return ids, sims
    pos = np.searchsorted(rows, src)
    order = np.lexsort((dst, -sim, pos))
    pos, dst, sim = pos[order], dst[order], sim[order]
    starts = np.flatnonzero(np.r_[True, pos[1:] != pos[:-1]])
    rank = np.arange(len(pos)) - np.repeat(starts, np.diff(np.r_[starts, len(pos)]))
    take = rank < k
    ids[pos[take], rank[take]] = dst[take]
    sims[pos[take], rank[take]] = sim[take]
    return ids, sims


def _set_lists(state: ClusterState, rows: np.ndarray, ids: np.ndarray, sims: np.ndarray) -> None:
    """Replace the lists of ``rows``, keeping the sums of their clusters exact."""
    if not len(rows):
        return
    codes = state.cluster.data[rows]
    inside = codes >= 0
    before = state.smoothed(rows[inside]).astype(np.float64) if inside.any() else None
    state.nbr.data[rows] = ids
    state.nbr_sim.data[rows] = sims
    if before is not None:
        after = state.smoothed(rows[inside]).astype(np.float64)
        assert state.sums is not None
        scatter_add(state.sums.data, state.counts.data, codes[inside], after - before, 0)


def index_new_faces(state: ClusterState, rows: np.ndarray, k: int, floor: float):
    """Give new faces (already in the index) their lists, and offer them to the lists of existing faces.

    Returns the neighbour hits of the new faces (top ``k`` above ``floor``) for the caller to reuse.
    """
    rows = np.sort(np.asarray(rows, np.int64))
    src, dst, sim = search(state, rows, k, floor)
    if state.smooth_k == 0:
        return src, dst, sim
    close = sim >= state.smooth_floor
    ids, sims = _top_k(src[close], dst[close], sim[close], rows, state.smooth_k)
    state.nbr.data[rows] = ids
    state.nbr_sim.data[rows] = sims
    # The same pairs seen from the other side: an existing face takes a new one if it beats its k-th.
    old = close & ~np.isin(dst, rows)
    if old.any():
        o_src, o_dst, o_sim = dst[old], src[old], sim[old]
        targets = np.unique(o_src)
        cur_ids, cur_sims = state.nbr.data[targets], state.nbr_sim.data[targets]
        have = cur_ids >= 0
        all_src = np.concatenate([np.repeat(targets, state.smooth_k)[have.ravel()], o_src])
        all_dst = np.concatenate([cur_ids[have], o_dst])
        all_sim = np.concatenate([cur_sims[have], o_sim])
        new_ids, new_sims = _top_k(all_src, all_dst, all_sim, targets, state.smooth_k)
        changed = (new_ids != cur_ids).any(axis=1)
        _set_lists(state, targets[changed], new_ids[changed], new_sims[changed])
    return src, dst, sim


def forget(state: ClusterState, removed: np.ndarray, remove_rows) -> None:
    """Remove faces (``remove_rows`` does the removal) and repair the lists that named them."""
    if state.smooth_k == 0:
        remove_rows(removed)
        return
    gone = np.zeros(len(state.face_ids), bool)
    gone[removed] = True
    listed = state.nbr.data
    affected = np.flatnonzero((gone[np.where(listed >= 0, listed, 0)] & (listed >= 0)).any(axis=1))
    affected = affected[state.alive.data[affected] & ~gone[affected]]
    codes = state.cluster.data[affected]
    inside = codes >= 0
    before = state.smoothed(affected[inside]).astype(np.float64)  # while the removed faces still exist
    remove_rows(removed)
    if not len(affected):
        return
    src, dst, sim = search(state, affected, state.smooth_k, state.smooth_floor)
    ids, sims = _top_k(src, dst, sim, affected, state.smooth_k)
    state.nbr.data[affected] = ids
    state.nbr_sim.data[affected] = sims
    if inside.any():
        after = state.smoothed(affected[inside]).astype(np.float64)
        assert state.sums is not None
        scatter_add(state.sums.data, state.counts.data, codes[inside], after - before, 0)
