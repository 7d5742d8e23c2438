"""The bulk path's search: a whole dataset's vectors, as read from Milvus, searched in memory.

A whole-dataset pass (the first task over a backfill) asks for the neighbours of every face: a million
queries for a million faces. Milvus answers a batch of queries per call (milvus-lite's FLAT search takes
~14 s for 1,000 queries at 1M faces; a server's HNSW answers ~1,000 queries a second here), which would take
the better part of an hour. So the pass reads the vectors once and searches them here:

- up to ``EXACT_MAX`` faces, exactly (``ExactIndex``): the clusters are those milvus-lite's FLAT gives;
- beyond, through an IVF-Flat index of faiss (the library milvus-lite itself runs on): ``LIST_SIZE`` faces a
  list on average, ``NPROBE`` lists searched per query, k-means on one thread with a fixed seed so the same
  faces give the same index. Brute force would cost n² (hours at a million faces on two cores); this is the
  index the engine ran on before Milvus, with the same list size and probes, so its recall is the one its
  figures were measured with (``python -m immray.bench.scale``).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from immray.clustering.neighbours import ExactIndex, search_frame

EXACT_MAX = 200_000
LIST_SIZE = 250
NPROBE = 12
_TRAIN_PER_LIST = 10  # k-means sample per list: the centres need only spread like the data
_KMEANS_ITERATIONS = 8
_SEED = 1234
_ADD_CHUNK = 100_000  # vectors read and added to the lists at a time (no whole second copy of them)

VectorsOf = Callable[[slice], np.ndarray]  # the vectors of rows[slice], (n, dim) float32


class IvfIndex:
    """Search-only inner-product index over fixed rows (built once per bulk pass). It also answers the
    vectors of the rows it holds (``vectors``; ``remove`` only stops that), so the pass keeps one copy."""

    def __init__(self, dim: int, rows: np.ndarray, vectors_of: VectorsOf) -> None:
        import faiss

        self.dim = dim
        rows = np.ascontiguousarray(rows, np.int64)
        n = len(rows)
        nlist = int(max(1, min(1 << 16, n // LIST_SIZE)))
        sample = _contiguous(vectors_of(slice(None, None, max(1, n // (nlist * _TRAIN_PER_LIST)))))
        was = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(1)  # a deterministic k-means
        try:
            kmeans = faiss.Kmeans(dim, nlist, niter=_KMEANS_ITERATIONS, seed=_SEED, spherical=True)
            kmeans.cp.min_points_per_centroid = 1
            kmeans.train(sample)
        finally:
            faiss.omp_set_num_threads(was)
        self._quantizer = faiss.IndexFlatIP(dim)
        self._quantizer.add(kmeans.centroids)
        self._index = faiss.IndexIVFFlat(self._quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
        self._index.is_trained = True
        for lo in range(0, n, _ADD_CHUNK):
            part = slice(lo, min(n, lo + _ADD_CHUNK))
            self._index.add_with_ids(_contiguous(vectors_of(part)), rows[part])
        self._index.nprobe = NPROBE
        self._index.set_direct_map_type(faiss.DirectMap.Hashtable)  # rows -> vectors, for ``vectors``
        self._held = np.zeros(int(rows.max()) + 1 if n else 0, bool)
        self._held[rows] = True
        self.ntotal = n

    def holds(self, rows: np.ndarray) -> np.ndarray:
        """Which of ``rows`` this index answers the vectors of."""
        rows = np.asarray(rows, np.int64)
        inside = rows < len(self._held)
        out = np.zeros(len(rows), bool)
        out[inside] = self._held[rows[inside]]
        return out

    def vectors(self, rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows, np.int64)
        if not self.holds(rows).all():
            raise KeyError(f"rows not in the index: {rows[~self.holds(rows)][:5].tolist()}")
        return self._index.reconstruct_batch(rows)

    def remove(self, rows: np.ndarray) -> None:
        """Stop answering these rows' vectors (the inverted lists keep them: a retired pass is not searched)."""
        rows = np.asarray(rows, np.int64)
        self._held[rows[rows < len(self._held)]] = False

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        queries, sims, ids = search_frame(queries, k, self.dim)
        if not len(queries) or not self.ntotal:
            return sims, ids
        found_sims, found_ids = self._index.search(np.ascontiguousarray(queries), k)
        missing = found_ids < 0
        found_sims[missing] = -np.inf
        return found_sims.astype(np.float32, copy=False), found_ids.astype(np.int64, copy=False)


def _contiguous(vectors: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(vectors, np.float32)


def bulk_index(dim: int, rows: np.ndarray, vectors_of: VectorsOf) -> ExactIndex | IvfIndex:
    """The in-memory index a bulk pass searches: exact up to ``EXACT_MAX`` faces, IVF-Flat beyond.
    ``vectors_of`` reads the vectors of a slice of ``rows``: the inverted lists take them a chunk at a time."""
    if len(rows) > EXACT_MAX:
        return IvfIndex(dim, rows, vectors_of)
    index = ExactIndex(dim)
    index.add(np.asarray(rows, np.int64), _contiguous(vectors_of(slice(None))))
    return index
