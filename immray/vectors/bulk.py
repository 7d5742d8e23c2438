"""The bulk path's search: a whole dataset's vectors, as read from Milvus, searched in memory.

A whole-dataset pass (the first task over a backfill) asks for the neighbours of every face: a million
queries for a million faces. Milvus answers a batch of queries per call (milvus-lite loops over every row
of the collection in Python for each call; a server's HNSW answers ~1,000 queries a second here), which
would take the better part of an hour. So the pass reads the vectors once and searches them here:

- up to ``EXACT_MAX`` faces, exactly (``ExactIndex``): the clusters are those milvus-lite's FLAT gives;
- beyond, through an IVF-Flat index of faiss (the library milvus-lite itself runs on): ``LIST_SIZE`` faces a
  list on average, ``NPROBE`` lists searched per query, k-means on one thread with a fixed seed so the same
  faces give the same index. Brute force would cost n² (hours at a million faces on two cores); this is the
  index the engine ran on before Milvus, with the same list size and probes, so its recall is the one its
  figures were measured with (``python -m immray.bench.scale``).
"""

from __future__ import annotations

import numpy as np

from immray.clustering.neighbours import ExactIndex, search_frame

EXACT_MAX = 200_000
LIST_SIZE = 250
NPROBE = 12
_TRAIN_PER_LIST = 10  # k-means sample per list: the centres need only spread like the data
_KMEANS_ITERATIONS = 8
_SEED = 1234


class IvfIndex:
    """Search-only inner-product index over fixed rows (built once per bulk pass)."""

    def __init__(self, dim: int, rows: np.ndarray, vectors: np.ndarray) -> None:
        import faiss

        self.dim = dim
        rows = np.ascontiguousarray(rows, np.int64)
        vectors = np.ascontiguousarray(vectors, np.float32)
        n = len(rows)
        nlist = int(max(1, min(1 << 16, n // LIST_SIZE)))
        sample = vectors[:: max(1, n // (nlist * _TRAIN_PER_LIST))]
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
        self._index.add_with_ids(vectors, rows)
        self._index.nprobe = NPROBE
        self.ntotal = n

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        queries, sims, ids = search_frame(queries, k, self.dim)
        if not len(queries) or not self.ntotal:
            return sims, ids
        found_sims, found_ids = self._index.search(np.ascontiguousarray(queries), k)
        missing = found_ids < 0
        found_sims[missing] = -np.inf
        return found_sims.astype(np.float32, copy=False), found_ids.astype(np.int64, copy=False)


def bulk_index(dim: int, rows: np.ndarray, vectors: np.ndarray) -> ExactIndex | IvfIndex:
    """The in-memory index a bulk pass searches: exact up to ``EXACT_MAX`` faces, IVF-Flat beyond."""
    if len(rows) > EXACT_MAX:
        return IvfIndex(dim, rows, vectors)
    index = ExactIndex(dim)
    index.add(np.asarray(rows, np.int64), np.asarray(vectors, np.float32))
    return index
