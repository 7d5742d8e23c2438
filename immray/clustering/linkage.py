"""Constrained average linkage over a sparse graph, fast enough for a million faces.

Faces are L2-normalised, so the average cosine similarity between two groups A and B is exactly
``sum(A) · sum(B) / (|A| |B|)``: each group is carried as the sum of its members and a count, and the linkage
of any two groups costs one dot product, however large they are. Only pairs of groups joined by at least one
edge of the nearest-neighbour graph are considered (two groups with no close members have a low average).

Merging follows RAC (reciprocal agglomerative clustering, Dhulipala et al. 2021): in each round every group
picks its most similar neighbour, and all mutual pairs merge at once. For a reducible linkage such as plain
average linkage this gives the same merges as the classic one-at-a-time algorithm (a test checks it against
scipy), yet each round is a handful of vectorised numpy passes over the edges instead of a Python loop over
merges. The refinements below bend reducibility a little; RAC stays well defined and deterministic.

Refinements: a size penalty (two single faces need more similarity than a face and a large group, since one
pair is a noisy witness), and constraints applied at every round: pairs of groups that must not meet (faces
of one photo, a face the user took out of a cluster), groups carrying two different user names, a higher bar
for joining two groups that are both established clusters ("strong evidence"), and for joining an
established cluster a small extra margin and a cohesion check.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_CHUNK = 1 << 16  # edges per block when gathering vectors (2 x 32 MB), to bound memory at a million faces


@dataclass(frozen=True)
class LinkageConstraints:
    """What may not merge. All arrays are indexed by unit (the input groups)."""

    cannot_link: np.ndarray | None = None  # (m, 2) pairs of units that must never share a group
    # bool per unit: already a cluster (merging two needs strong_threshold)
    established: np.ndarray | None = None
    name: np.ndarray | None = None  # int per unit: user-name code, -1 for unnamed; two codes never merge
    strong_threshold: float | None = None  # bar for joining two established groups (>= threshold)
    # A group joins an established cluster only if its average similarity to it is within this margin of
    # the cluster's own cohesion (mean similarity between its members); None = no such check.
    cohesion_margin: float | None = None
    # Taken off the score of a pair in which exactly one group is established: joining an existing cluster
    # needs this much more similarity than joining new faces, and new faces pair up among themselves first.
    adopt_margin: float = 0.0


@dataclass(frozen=True)
class _Scoring:
    penalty: float  # taken off as penalty / (|A| |B|)
    threshold: float
    cohesion_margin: float | None  # see LinkageConstraints
    adopt_margin: float  # see LinkageConstraints
    established: np.ndarray


def _edge_similarity(
    sums: np.ndarray, counts: np.ndarray, u: np.ndarray, v: np.ndarray, how: _Scoring
) -> np.ndarray:
    """Score of each pair of groups: their average similarity less ``penalty / (|A| |B|)``; and, when one
    of them is an established cluster, less ``adopt_margin`` and no more than its shortfall against that
    cluster's own cohesion."""
    out = np.empty(len(u), dtype=np.float64)
    for lo in range(0, len(u), _CHUNK):
        hi = lo + _CHUNK
        a, b = u[lo:hi], v[lo:hi]
        dots = np.einsum("ij,ij->i", sums[a], sums[b], dtype=np.float64)
        pairs = counts[a] * counts[b]
        avg = dots / pairs
        score = avg - how.penalty / pairs
        one = how.established[a] != how.established[b]
        if how.adopt_margin:
            score[one] -= how.adopt_margin
        if how.cohesion_margin is not None and one.any():
            est = np.where(how.established[a], a, b)[one]
            n = counts[est]
            sq = np.einsum("ij,ij->i", sums[est], sums[est], dtype=np.float64)
            cohesion = np.where(n > 1, (sq - n) / np.maximum(n * (n - 1), 1), -np.inf)
            bar = avg[one] - (cohesion - how.cohesion_margin) + how.threshold
            score[one] = np.minimum(score[one], bar)
        out[lo:hi] = score
    return out


def _canonical(u: np.ndarray, v: np.ndarray, n_units: int) -> tuple[np.ndarray, np.ndarray]:
    """Edges as unique (low, high) pairs without self-loops, in a fixed order (int32 unit indices). One
    int64 key per edge is the only wide array (a million faces' ten million edges: 80 MB, sorted in place)."""
    keep = u != v
    keys = _pair_keys(u[keep], v[keep], n_units)
    del keep
    keys.sort()
    if len(keys):
        keys = keys[np.r_[True, keys[1:] != keys[:-1]]]
    low = (keys // n_units).astype(np.int32)
    keys %= n_units
    return low, keys.astype(np.int32)


def _pair_keys(a: np.ndarray, b: np.ndarray, n_units: int) -> np.ndarray:
    keys = np.minimum(a, b).astype(np.int64)
    keys *= n_units
    keys += np.maximum(a, b)
    return keys


def average_linkage(
    sums: np.ndarray,
    counts: np.ndarray,
    edges: np.ndarray,
    threshold: float,
    constraints: LinkageConstraints | None = None,
    pair_penalty: float = 0.0,
    overwrite_sums: bool = False,
) -> np.ndarray:
    """Group units whose average cosine similarity stays at or above ``threshold``.

    ``sums`` (n, d) holds the sum of each unit's normalised embeddings and ``counts`` (n,) its size; a single
    face is a unit with its embedding as sum and count 1. ``edges`` (e, 2) lists candidate pairs (the kNN
    graph). ``pair_penalty / (|A| |B|)`` is taken off the similarity of groups A and B, so that joining on
    few pairs needs more similarity than joining on many. Returns, for each unit, the index of the unit its group is named after (the smallest member of the
    group). Deterministic: ties are broken by unit index. With ``overwrite_sums`` a float32 ``sums`` is used as
    scratch space instead of being copied.
    """
    c = constraints or LinkageConstraints()
    n = len(counts)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    if n >= np.iinfo(np.int32).max:
        raise ValueError(f"too many units for one linkage: {n}")
    # Group sums are accumulated in place: in the caller's float32 array if it may be overwritten.
    sums = np.asarray(sums, dtype=np.float32) if overwrite_sums else np.array(sums, dtype=np.float32)
    size = np.asarray(counts, dtype=np.float64).copy()
    root = np.arange(n, dtype=np.int64)
    established = np.zeros(n, bool) if c.established is None else np.asarray(c.established, bool).copy()
    name = np.full(n, -1, np.int64) if c.name is None else np.asarray(c.name, np.int64).copy()
    strong = threshold if c.strong_threshold is None else max(threshold, c.strong_threshold)
    forbidden = np.zeros(0, np.int64)
    cl = np.zeros((0, 2), np.int64) if c.cannot_link is None else np.asarray(c.cannot_link, np.int64)
    cl = cl[cl[:, 0] != cl[:, 1]] if len(cl) else cl.reshape(0, 2)

    edges = np.asarray(edges).reshape(-1, 2)
    if not np.issubdtype(edges.dtype, np.integer):
        edges = edges.astype(np.int64)
    u, v = _canonical(edges[:, 0], edges[:, 1], n)
    del edges
    how = _Scoring(pair_penalty, threshold, c.cohesion_margin, c.adopt_margin, established)
    sim = _edge_similarity(sums, size, u, v, how)
    weak = sim < threshold  # most kNN edges: dropped before the rounds make their temporaries
    u, v, sim = u[~weak], v[~weak], sim[~weak]
    while len(u):
        if len(cl):
            forbidden = np.unique(_pair_keys(cl[:, 0], cl[:, 1], n))
        ok = sim >= np.where(established[u] & established[v], strong, threshold)
        ok &= (name[u] < 0) | (name[v] < 0) | (name[u] == name[v])
        if len(forbidden):
            ok &= ~np.isin(_pair_keys(u, v, n), forbidden, assume_unique=False)
        # Edges that fail now are dropped for good: an average of values under the bar stays under it, and
        # constraints only accumulate as groups grow. (Only the size penalty shrinks as groups grow; the
        # second chance it could give is not worth keeping every weak edge for.)
        u, v, sim = u[ok], v[ok], sim[ok]
        if not len(u):
            break
        # Each unit's best neighbour: highest similarity, ties to the lowest index.
        best = np.full(n, -np.inf)
        np.maximum.at(best, u, sim)
        np.maximum.at(best, v, sim)
        partner = np.full(n, n, dtype=np.int64)
        top = sim == best[u]
        np.minimum.at(partner, u[top], v[top])
        top = sim == best[v]
        np.minimum.at(partner, v[top], u[top])
        has = partner < n
        mutual = np.flatnonzero(has)
        mutual = mutual[(partner[partner[mutual]] == mutual) & (mutual < partner[mutual])]
        if not len(mutual):  # cannot happen (the best edge overall is mutual); guards against a loop
            break
        keep, gone = mutual, partner[mutual]
        sums[keep] += sums[gone]
        size[keep] += size[gone]
        established[keep] |= established[gone]
        name[keep] = np.maximum(name[keep], name[gone])
        step = np.arange(n, dtype=np.int32)
        step[gone] = keep
        root = step[root].astype(np.int64)
        if len(cl):
            cl = step[cl]
        merged = np.zeros(n, bool)
        merged[keep] = True
        u, v = step[u], step[v]
        touched = merged[u] | merged[v]
        stay_u, stay_v, stay_s = u[~touched], v[~touched], sim[~touched]
        new_u, new_v = _canonical(u[touched], v[touched], n)
        new_s = _edge_similarity(sums, size, new_u, new_v, how)
        u = np.concatenate([stay_u, new_u])
        v = np.concatenate([stay_v, new_v])
        sim = np.concatenate([stay_s, new_s])
    return root
