"""The engine's ``NeighbourIndex`` for one dataset, on Milvus: rows in the engine, face keys in Milvus.

The engine numbers its faces by row; Milvus keys them by the store's face id. The index keeps the mapping in
memory (the state's ``face_ids`` say which face a row is; the index remembers which rows it holds) and
leaves the vectors in Milvus: ``add`` makes sure they are there (an upsert only of those missing or stale,
the repair of a write lost between the SQL commit and Milvus), ``vectors`` reads them back, ``search`` asks
Milvus for many queries per call, filtered to the dataset. Milvus may hold faces of the dataset that the
engine does not (indexed since the task read its changes, or of another model): search drops them, asking
again with a larger limit where that left a query short.

The vectors the index wrote or read are kept in memory (up to ``CACHE_ROWS``, the oldest forgotten first):
within a task the engine reads the same faces' vectors many times (smoothing, linkage), and Milvus is only
asked once for each (``immray.vectors.cache``). A bulk pass's in-memory index holds every vector it
searches, so the cache lets them go, and that index goes on answering them (not searched) after the rows
change: one copy of a million vectors in the actor, not two. Those reads and the searches follow ``add``'s
Strong check of the task's new faces (or ``attach``'s scan), so they may be Session reads (see
``immray.vectors.store``).

``remove`` only forgets the rows: the face's vector leaves Milvus when the face leaves the store (deleting
files or the dataset, or the task that takes the tombstone), never because the engine re-adds it.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

import numpy as np

from immray.clustering.neighbours import search_frame
from immray.vectors.bulk import bulk_index
from immray.vectors.cache import VectorCache
from immray.vectors.store import FaceVectors

_MAX_LIMIT = 16_384
CACHE_ROWS = 1_000_000  # vectors an index keeps read (512 MB of 128-d float32 at most, in one slab)
BULK_QUERIES = 2_000  # a search of this many queries at once reads the vectors and searches them exactly


class MilvusIndex:
    """``NeighbourIndex`` over one dataset's vectors in one collection of a :class:`FaceVectors`."""

    def __init__(
        self,
        store: FaceVectors,
        collection: str,
        dataset_id: int,
        dim: int,
        face_ids: Callable[[], Sequence[int]],
    ) -> None:
        self.store = store
        self.collection = collection
        self.dataset_id = int(dataset_id)
        self.dim = int(dim)
        self._face_ids = face_ids  # the state's row -> face id list (read when rows arrive)
        self._row_of: dict[int, int] = {}  # face key -> row, of the rows held
        self._cache = VectorCache(self.dim)  # face key -> vector, as written or read (see vectors)
        self.written = 0  # vectors this index had to (re)write: the repairs
        self._bulk = None  # the held vectors searched in memory, for bulk searches (immray.vectors.bulk)
        self._kept = None  # a bulk index retired by a change of rows: it still answers its rows' vectors

    @property
    def ntotal(self) -> int:
        return len(self._row_of)

    def _keys(self, rows: np.ndarray) -> list[int]:
        ids = self._face_ids()
        return [int(ids[r]) for r in rows.tolist()]

    def add(self, rows: np.ndarray, vectors: np.ndarray) -> None:
        rows = _rows(rows)
        vectors = np.asarray(vectors, np.float32)
        if vectors.shape != (len(rows), self.dim):
            raise ValueError(f"expected vectors of shape ({len(rows)}, {self.dim}), got {vectors.shape}")
        if not len(rows):
            return
        keys = self._keys(rows)
        self.written += self.store.ensure(self.collection, self.dataset_id, keys, vectors)
        self._retire_bulk(rows)
        for key, row in zip(keys, rows.tolist(), strict=True):
            self._row_of[key] = row
        self._cache.put(keys, vectors)  # re-added ones become the newest
        self._cache.trim(CACHE_ROWS)

    def attach(self, rows: np.ndarray, keys: Sequence[int]) -> list[int]:
        """Hold ``rows`` (faces ``keys``) whose vectors Milvus has already (a state loaded after a restart):
        nothing is written. Returns the keys Milvus lacks, for the caller to restore from the store."""
        rows = _rows(rows)
        held = self.store.keys(self.dataset_id, [self.collection])[self.collection]
        for key, row in zip(keys, rows.tolist(), strict=True):
            self._row_of[int(key)] = row
        return [int(k) for k in keys if int(k) not in held]

    def remove(self, rows: np.ndarray) -> None:
        rows = _rows(rows)
        self._retire_bulk(rows)
        for key in self._keys(rows):
            self._row_of.pop(key, None)
            self._cache.discard(key)

    def _retire_bulk(self, changed: np.ndarray) -> None:
        """The rows change, so the bulk index may no longer be searched; it keeps answering the vectors of
        the rows it holds but ``changed`` (the cache gave them up to it: one copy, not two)."""
        if self._bulk is not None:
            self._kept, self._bulk = self._bulk, None
        if self._kept is not None and len(changed):
            self._kept.remove(changed)

    def vectors(self, rows: np.ndarray) -> np.ndarray:
        rows = _rows(rows)
        keys = self._keys(rows)
        unknown = [k for k, r in zip(keys, rows.tolist(), strict=True) if self._row_of.get(k) != r]
        if unknown:
            raise KeyError(f"rows not in the index: {unknown[:5]}")
        if not keys:
            return np.zeros((0, self.dim), np.float32)
        out = np.empty((len(keys), self.dim), np.float32)
        cached = np.fromiter((k in self._cache for k in keys), bool, len(keys))
        if cached.any():
            out[cached] = self._cache.get(itertools.compress(keys, cached))
        rest = np.flatnonzero(~cached)
        held = self._bulk if self._bulk is not None else self._kept
        if len(rest) and held is not None:  # the bulk pass's index holds them: no second copy
            there = held.holds(rows[rest])
            out[rest[there]] = held.vectors(rows[rest[there]])
            rest = rest[~there]
        if len(rest):  # the engine reads the same faces again and again within a task: fetch each once
            fetch = [keys[i] for i in rest.tolist()]
            self._fetch(list(dict.fromkeys(fetch)))
            out[rest] = self._cache.get(fetch)
        self._cache.trim(CACHE_ROWS)  # after the answer: it may forget vectors of this very call
        return out

    def _fetch(self, keys: list[int]) -> None:
        """Read ``keys``' vectors (distinct, all held) from Milvus into the cache, one call's answer at a
        time (a restarted actor's bulk pass reads a million)."""
        for _, found in self.store.get_batches(self.collection, keys, session=True):
            self._cache.put_each(found)
        missing = [k for k in keys if k not in self._cache]
        if missing:
            raise KeyError(f"face vectors missing from Milvus: {missing[:5]}")

    def _bulk_index(self):
        """The bulk path (a backfill's first task asks for the neighbours of every face): the held vectors
        searched in memory (``immray.vectors.bulk``) instead of a million queries to Milvus. They are the
        ones this task wrote or checked against Milvus (the cache), a retired pass's, the rest read from
        Milvus by key. The index then holds every row's vector, so the cache lets them go."""
        if self._bulk is None:
            rows = np.fromiter(self._row_of.values(), np.int64, len(self._row_of))
            self._bulk = bulk_index(self.dim, rows, lambda part: self.vectors(rows[part]))
            self._kept = None
            self._cache.clear()
        return self._bulk

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        queries, sims, ids = search_frame(queries, k, self.dim)
        m = len(queries)
        if not m or not self._row_of:
            return sims, ids
        if m >= BULK_QUERIES and self.ntotal <= CACHE_ROWS:
            return self._bulk_index().search(queries, k)
        todo = np.arange(m)
        limit = min(k + 16, _MAX_LIMIT)
        while len(todo):
            hits = self.store.search(self.collection, self.dataset_id, queries[todo], limit, session=True)
            again = []
            for q, found in zip(todo.tolist(), hits, strict=True):
                known = [(s, self._row_of[key]) for key, s in found if key in self._row_of]
                if len(known) < k and len(found) >= limit and limit < _MAX_LIMIT:
                    again.append(q)  # other faces of the dataset crowded this one's out: ask for more
                    continue
                known.sort(key=lambda hit: (-hit[0], hit[1]))  # ties to the lower row, like ExactIndex
                known = known[:k]
                sims[q, : len(known)] = [s for s, _ in known]
                ids[q, : len(known)] = [r for _, r in known]
            todo = np.asarray(again, np.int64)
            limit = min(limit * 4, _MAX_LIMIT)
        return sims, ids


def _rows(rows: np.ndarray) -> np.ndarray:
    rows = np.asarray(rows)
    if rows.ndim != 1 or (len(rows) and not np.issubdtype(rows.dtype, np.integer)):
        raise ValueError("rows must be a 1-d array of integers")
    return rows.astype(np.int64, copy=False)


class DatasetIndexes:
    """The ``IndexFactory`` of one dataset's task: makes :class:`MilvusIndex` es whose rows are the faces of
    the state bound with :meth:`bind` (the factory runs inside the state, before it could be told)."""

    def __init__(self, store: FaceVectors, dataset_id: int, model: str) -> None:
        self.store = store
        self.dataset_id = int(dataset_id)
        self.model = model
        self.state = None

    def bind(self, state) -> None:
        self.state = state

    def __call__(self, dim: int) -> MilvusIndex:
        collection = self.store.collection(self.model, dim)
        return MilvusIndex(self.store, collection, self.dataset_id, dim, self._face_ids)

    def _face_ids(self) -> Sequence[int]:
        if self.state is None:
            raise RuntimeError("the Milvus index is not bound to a clustering state")
        return self.state.face_ids
