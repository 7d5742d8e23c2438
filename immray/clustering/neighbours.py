"""Where the engine's faces' vectors live and are searched: the ``NeighbourIndex`` seam, and ``ExactIndex``.

The engine addresses a face by its row (an int64 that is never reused, see state.py) and needs four things
of the place that keeps the faces' normalised embeddings: put vectors in, take them out, read them back by
row, and find each query's most similar rows. ``NeighbourIndex`` is that contract; the engine depends on
nothing else, so the vectors may live in memory (``ExactIndex``, for tests and the in-memory engine), in
Milvus (``immray.vectors``, in production) or in faiss (``immray.bench.faiss_index``, the bench baseline).

``ExactIndex`` is brute force in numpy: exact and deterministic (equal similarities are ordered by the lower
row), with the similarity matrix computed in blocks so a million faces search in bounded memory.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class NeighbourIndex(Protocol):
    """Where the engine's faces' normalised vectors live and are searched, keyed by engine row (int64)."""

    dim: int

    @property
    def ntotal(self) -> int:
        """How many rows the index holds."""
        ...

    def add(self, rows: np.ndarray, vectors: np.ndarray) -> None:
        """Store ``vectors`` ((n, dim) float32, normalised) under ``rows`` ((n,) int64); a row already
        held is replaced (idempotent, like an upsert)."""
        ...

    def remove(self, rows: np.ndarray) -> None:
        """Forget these rows (rows not held are ignored)."""
        ...

    def vectors(self, rows: np.ndarray) -> np.ndarray:
        """The stored vectors of ``rows``, (n, dim) float32 in the given order; KeyError for a missing row."""
        ...

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` most similar rows of each query ((m, dim)): similarities (m, k) float32 (inner
        product, descending) and rows (m, k) int64, padded with row -1 when fewer than k rows are held."""
        ...


IndexFactory = Callable[[int], NeighbourIndex]
"""Makes an empty index for vectors of a dimension: how the engine gets an index for a new dataset."""

_QUERY_BLOCK = 1_024  # queries per similarity block
_ROW_BLOCK = 32_768  # stored rows per similarity block: 1,024 x 32,768 float32 = 128 MiB at most
_SPARSE_FACTOR = 4  # a block with at most this many times k candidates per query is merged sparsely


def search_frame(queries: np.ndarray, k: int, dim: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Checked float32 queries and the empty answer every index fills: similarities -inf, rows -1."""
    queries = np.asarray(queries, np.float32)
    if queries.ndim != 2 or queries.shape[1] != dim:
        raise ValueError(f"expected queries of shape (m, {dim}), got {queries.shape}")
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    m = len(queries)
    return queries, np.full((m, k), -np.inf, np.float32), np.full((m, k), -1, np.int64)


class ExactIndex:
    """Exact inner-product search over vectors held in memory, stored densely by row."""

    def __init__(self, dim: int) -> None:
        if not isinstance(dim, int) or isinstance(dim, bool) or dim <= 0:
            raise ValueError(f"embedding dimension must be a positive integer, got {dim!r}")
        self.dim = dim
        self._data = np.zeros((0, dim), np.float32)  # row -> vector (rows are small, dense integers)
        self._held = np.zeros(0, bool)
        self._n = 0

    @property
    def ntotal(self) -> int:
        return self._n

    def rows(self) -> np.ndarray:
        """Every row held, ascending."""
        return np.flatnonzero(self._held).astype(np.int64)

    def holds(self, rows: np.ndarray) -> np.ndarray:
        """Which of ``rows`` are held (a bool per row)."""
        rows = self._check_rows(rows)
        out = np.zeros(len(rows), bool)
        inside = rows < len(self._held)
        out[inside] = self._held[rows[inside]]
        return out

    def add(self, rows: np.ndarray, vectors: np.ndarray) -> None:
        rows = self._check_rows(rows)
        vectors = np.asarray(vectors, np.float32)
        if vectors.shape != (len(rows), self.dim):
            raise ValueError(f"expected vectors of shape ({len(rows)}, {self.dim}), got {vectors.shape}")
        if not len(rows):
            return
        if not np.isfinite(vectors).all():
            raise ValueError("vectors must be finite")
        if len(np.unique(rows)) != len(rows):
            raise ValueError("rows must be distinct within one add")
        need = int(rows.max()) + 1
        if need > len(self._held):
            cap = max(need, 2 * len(self._held), 16)
            data = np.zeros((cap, self.dim), np.float32)
            data[: len(self._data)] = self._data
            held = np.zeros(cap, bool)
            held[: len(self._held)] = self._held
            self._data, self._held = data, held
        self._n += int((~self._held[rows]).sum())
        self._data[rows] = vectors
        self._held[rows] = True

    def remove(self, rows: np.ndarray) -> None:
        rows = self._check_rows(rows)
        rows = np.unique(rows[rows < len(self._held)])
        rows = rows[self._held[rows]]
        self._held[rows] = False
        self._data[rows] = 0.0
        self._n -= len(rows)

    def vectors(self, rows: np.ndarray) -> np.ndarray:
        rows = self._check_rows(rows)
        inside = rows < len(self._held)
        if not inside.all() or not self._held[rows].all():
            missing = rows[~inside] if not inside.all() else rows[~self._held[rows]]
            raise KeyError(f"rows not in the index: {missing[:5].tolist()}")
        return self._data[rows].copy()

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        queries, sims, ids = search_frame(queries, k, self.dim)
        m = len(queries)
        for lo in range(0, m, _QUERY_BLOCK):
            s, i = self._search_block(queries[lo : lo + _QUERY_BLOCK], k)
            sims[lo : lo + len(s)], ids[lo : lo + len(s)] = s, i
        return sims, ids

    def _search_block(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k of a block of queries, merged over blocks of stored rows in ascending row order.

        Once a query holds k hits, only similarities above its k-th can enter (an equal one comes from a
        higher row and loses the tie), usually a handful per block: those are gathered sparsely instead of
        partitioning the whole block again."""
        m = len(queries)
        best_sim = np.full((m, k), -np.inf, np.float32)
        best_row = np.full((m, k), -1, np.int64)
        for lo in range(0, len(self._held), _ROW_BLOCK):
            held = np.flatnonzero(self._held[lo : lo + _ROW_BLOCK])
            if not len(held):
                continue
            data = self._data[lo : lo + _ROW_BLOCK]
            block = queries @ (data if len(held) == len(data) else data[held]).T
            above = block > best_sim[:, -1:]
            if int(np.count_nonzero(above)) <= _SPARSE_FACTOR * k * m:
                q, c = np.nonzero(above)
                best_sim, best_row = _merge_sparse(best_sim, best_row, q, block[q, c], held[c] + lo, k)
                continue
            s, c = _top_k_of_block(block, k)
            r = np.where(c >= 0, held[np.maximum(c, 0)] + lo, -1)
            best_sim, best_row = _merge(best_sim, best_row, s, r, k)
        best_row[~np.isfinite(best_sim)] = -1
        return best_sim, best_row

    def _check_rows(self, rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows)
        if rows.ndim != 1 or (len(rows) and not np.issubdtype(rows.dtype, np.integer)):
            raise ValueError("rows must be a 1-d array of integers")
        rows = rows.astype(np.int64, copy=False)
        if len(rows) and rows.min() < 0:
            raise ValueError("rows must not be negative")
        return rows


def _top_k_of_block(block: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each line's k largest values, descending, ties to the lower column; column -1 where fewer."""
    m, n = block.shape
    if n <= k:
        cols = np.broadcast_to(np.arange(n), (m, n))
    else:
        cols = np.argpartition(block, n - k, axis=1)[:, n - k :]  # the k largest, in no order
        # argpartition picks arbitrarily among values equal to the k-th: where such ties reach past the
        # cut, take the lowest columns (a stable sort of that line).
        kth = np.take_along_axis(block, cols, axis=1).min(axis=1, keepdims=True)
        tied = (block >= kth).sum(axis=1) > k
        if tied.any():
            cols = cols.copy()
            cols[tied] = np.argsort(-block[tied], axis=1, kind="stable")[:, :k]
    vals = np.take_along_axis(block, cols, axis=1)
    order = np.lexsort((cols, -vals), axis=1) if m else np.zeros((0, cols.shape[1]), np.int64)
    cols, vals = np.take_along_axis(cols, order, axis=1), np.take_along_axis(vals, order, axis=1)
    out_s = np.full((m, k), -np.inf, np.float32)
    out_r = np.full((m, k), -1, np.int64)
    out_s[:, : cols.shape[1]], out_r[:, : cols.shape[1]] = vals, cols
    out_r[~np.isfinite(out_s)] = -1
    return out_s, out_r


def _merge(sa: np.ndarray, ra: np.ndarray, sb: np.ndarray, rb: np.ndarray, k: int):
    """The k best of two descending top-k lists per line, ties to the lower row (-1 rows last)."""
    s = np.concatenate([sa, sb], axis=1)
    r = np.concatenate([ra, rb], axis=1)
    tie_row = np.where(r >= 0, r, np.iinfo(np.int64).max)
    order = np.lexsort((tie_row, -s), axis=1)[:, :k]
    return np.take_along_axis(s, order, axis=1), np.take_along_axis(r, order, axis=1)


class BadEmbedding(ValueError):
    """An embedding that cannot be normalised (zero or not finite); ``row`` says which."""

    def __init__(self, row: int) -> None:
        super().__init__(f"embedding {row} is zero or not finite")
        self.row = row


def normalise(vectors: np.ndarray, *, copy: bool = True) -> np.ndarray:
    """Embeddings scaled to unit length, the one way the engine does it (float64 norms, float32 divide), so
    vectors restored into an index are bit for bit those the engine first stored. ``BadEmbedding`` for a
    zero or non-finite row. ``copy=False``: a float32 array the caller just made is scaled in place (a
    million faces' first task: 512 MB less at its peak)."""
    vectors = np.array(vectors, dtype=np.float32, copy=True if copy else None)
    norms = np.sqrt(np.einsum("ij,ij->i", vectors, vectors, dtype=np.float64))
    bad = ~np.isfinite(norms) | ~(norms > 0)
    if bad.any():
        raise BadEmbedding(int(np.argmax(bad)))
    vectors /= norms[:, None].astype(np.float32)
    return vectors


def _merge_sparse(sa: np.ndarray, ra: np.ndarray, q: np.ndarray, sb: np.ndarray, rb: np.ndarray, k: int):
    """The k best per line of a descending top-k list and scattered (line, similarity, row) candidates
    whose rows all exceed the list's rows; ties to the lower row."""
    if not len(q):
        return sa, ra
    m = len(sa)
    lines = np.concatenate([np.repeat(np.arange(m), k), q])
    sims = np.concatenate([sa.ravel(), sb])
    rows = np.concatenate([ra.ravel(), rb])
    tie_row = np.where(rows >= 0, rows, np.iinfo(np.int64).max)
    order = np.lexsort((tie_row, -sims, lines))
    lines, sims, rows = lines[order], sims[order], rows[order]
    starts = np.searchsorted(lines, np.arange(m))  # every line has its k old entries, so none is empty
    rank = np.arange(len(lines)) - np.repeat(starts, np.diff(np.r_[starts, len(lines)]))
    take = rank < k
    out_s, out_r = np.empty_like(sa), np.empty_like(ra)
    out_s[lines[take], rank[take]] = sims[take]
    out_r[lines[take], rank[take]] = rows[take]
    return out_s, out_r


def exact_index(dim: int) -> ExactIndex:
    """The default ``IndexFactory``."""
    return ExactIndex(dim)
