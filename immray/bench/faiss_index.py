"""The engine's faiss index of old (``FaceIndex``), kept as the scale bench's baseline ``NeighbourIndex``.

Until issue 15 the engine kept each dataset's vectors in this index and saved it inside the state blob. The
engine now takes any ``immray.clustering.neighbours.NeighbourIndex``; this one runs beside ``ExactIndex`` and
Milvus in ``immray.bench.scale`` (``faiss_index_factory``). Nothing outside ``immray.bench`` imports faiss.

Small datasets use an exact flat index. Past ``ivf_min_faces`` the index becomes an inverted file (IVF-Flat)
with about ``n / 250`` lists: a search scans ``nprobe`` lists of ~250 faces whatever the size of the dataset,
after comparing the query with the list centres (one BLAS product for a batch of queries; past 4M faces the
centres are searched through a small HNSW graph, O(log n)). Adding k faces thus costs about O(k log n). The lists are retrained when the dataset has grown fourfold since the last
training, an amortised O(1) per face. Training and the graph are built on one thread, so the same faces give
the same index, byte for byte.

Faces are addressed by their row number in the engine's state (faiss id = row). The index keeps the exact
normalised vectors and can return them by id. ``to_bytes``/``from_bytes`` serialise it (the old state blob's
``index.faiss`` member is such bytes, after a 32-byte header).
"""

from __future__ import annotations

from collections.abc import Callable

import faiss
import numpy as np

_LIST_SIZE = 250  # faces per inverted list, on average
_TRAIN_POINTS_PER_LIST = 10  # k-means sample per list: centres need not be precise, only spread like the data
_KMEANS_ITERATIONS = 8
_HNSW_LINKS = 32
_FLAT_QUANTIZER_MAX = 16_384  # above this many lists (4M faces), centres are searched through HNSW
_SEED = 1234


def _nlist_for(n: int) -> int:
    return int(max(1, min(1 << 16, n // _LIST_SIZE)))


class _OneThread:
    """Run faiss on one thread (deterministic k-means and HNSW construction), then restore."""

    def __enter__(self) -> None:
        self._was = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(1)

    def __exit__(self, *exc: object) -> None:
        faiss.omp_set_num_threads(self._was)


class FaceIndex:
    """Inner-product search over normalised embeddings keyed by int64 ids (a ``NeighbourIndex``; unlike
    ``ExactIndex``, adding an id it already holds adds a second copy, and IVF search is approximate)."""

    def __init__(self, dim: int, *, ivf_min_faces: int = 20_000, nprobe: int = 12) -> None:
        if dim <= 0:
            raise ValueError(f"embedding dimension must be positive, got {dim}")
        self.dim = dim
        self.ivf_min_faces = ivf_min_faces
        self.nprobe = nprobe
        self._index: faiss.Index = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
        self._trained_at = 0  # faces in the index when the IVF lists were last trained (0 = flat)

    @property
    def ntotal(self) -> int:
        return int(self._index.ntotal)

    @property
    def is_ivf(self) -> bool:
        return self._trained_at > 0

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if len(ids) == 0:
            return
        n = self.ntotal + len(ids)
        if (not self.is_ivf and n >= self.ivf_min_faces) or (self.is_ivf and n >= 4 * self._trained_at):
            old = self.all_ids()
            if len(old):
                ids, vectors = np.concatenate([old, ids]), np.concatenate([self.vectors(old), vectors])
            self._build_ivf(ids, vectors)
        else:
            self._index.add_with_ids(vectors, ids)

    def remove(self, ids: np.ndarray) -> None:
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        if len(ids):
            self._index.remove_ids(ids)

    def vectors(self, ids: np.ndarray) -> np.ndarray:
        """The stored (normalised) vectors of these ids, in order."""
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        if len(ids) == 0:
            return np.zeros((0, self.dim), np.float32)
        return self._index.reconstruct_batch(ids)

    def all_ids(self) -> np.ndarray:
        """Every id in the index, sorted."""
        if self.is_ivf:
            ivf = faiss.extract_index_ivf(self._index)
            lists = ivf.invlists
            parts = []
            for i in range(ivf.nlist):
                size = lists.list_size(i)
                if size:
                    parts.append(faiss.rev_swig_ptr(lists.get_ids(i), size).copy())
            ids = np.concatenate(parts) if parts else np.zeros(0, np.int64)
        else:
            ids = faiss.vector_to_array(self._index.id_map).astype(np.int64)
        return np.sort(ids)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` most similar ids for each query (similarity, id); missing slots have id -1."""
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        want = max(1, k)
        k = max(1, min(k, self.ntotal))
        if len(queries) == 0 or self.ntotal == 0:
            return np.full((len(queries), want), -np.inf, np.float32), np.full(
                (len(queries), want), -1, np.int64
            )
        if self.is_ivf:
            faiss.extract_index_ivf(self._index).nprobe = self.nprobe
        sims, ids = self._index.search(queries, k)
        if k < want:  # the protocol's shape: (m, want), padded with id -1
            pad = want - k
            sims = np.pad(sims, ((0, 0), (0, pad)), constant_values=-np.inf)
            ids = np.pad(ids, ((0, 0), (0, pad)), constant_values=-1)
        return sims, ids

    def _build_ivf(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """(Re)build as IVF-Flat with lists sized for this many faces, trained on an even sample of them."""
        n = len(ids)
        nlist = _nlist_for(n)
        sample = vectors[:: max(1, n // (nlist * _TRAIN_POINTS_PER_LIST))]
        with _OneThread():
            kmeans = faiss.Kmeans(self.dim, nlist, niter=_KMEANS_ITERATIONS, seed=_SEED, spherical=True)
            kmeans.cp.min_points_per_centroid = 1
            kmeans.train(sample)
            if nlist <= _FLAT_QUANTIZER_MAX:  # a batch of queries meets the centres in one BLAS product
                quantizer = faiss.IndexFlatIP(self.dim)
            else:
                quantizer = faiss.IndexHNSWFlat(self.dim, _HNSW_LINKS, faiss.METRIC_INNER_PRODUCT)
                quantizer.hnsw.efConstruction = 40
                quantizer.hnsw.efSearch = max(64, 2 * self.nprobe)
            quantizer.add(kmeans.centroids)
        ivf = faiss.IndexIVFFlat(quantizer, self.dim, nlist, faiss.METRIC_INNER_PRODUCT)
        ivf.is_trained = True
        ivf.own_fields = True
        quantizer.this.disown()
        ivf.set_direct_map_type(faiss.DirectMap.Hashtable)
        self._index = faiss.IndexIDMap2(faiss.IndexFlatIP(self.dim))  # let the old one go first
        ivf.add_with_ids(vectors, ids)
        self._index = ivf
        self._trained_at = n

    # --- persistence -------------------------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        """Canonical bytes: the id -> position hash table is left out (its order depends on history) and
        rebuilt from the lists on load, so equal indexes give equal bytes."""
        header = np.array([self.dim, self.ivf_min_faces, self.nprobe, self._trained_at], dtype=np.int64)
        if not self.is_ivf:
            return header.tobytes() + faiss.serialize_index(self._index).tobytes()
        self._index.set_direct_map_type(faiss.DirectMap.NoMap)
        try:
            return header.tobytes() + faiss.serialize_index(self._index).tobytes()
        finally:
            self._index.set_direct_map_type(faiss.DirectMap.Hashtable)

    @classmethod
    def from_bytes(cls, data: bytes) -> FaceIndex:
        if len(data) < 32:
            raise ValueError("not a immray face index")
        dim, ivf_min_faces, nprobe, trained_at = (int(x) for x in np.frombuffer(data[:32], dtype=np.int64))
        out = cls(dim, ivf_min_faces=ivf_min_faces, nprobe=nprobe)
        try:
            out._index = faiss.deserialize_index(np.frombuffer(data[32:], dtype=np.uint8))
        except RuntimeError as exc:  # faiss reports a damaged stream this way
            raise ValueError(f"face index is corrupt: {exc}") from exc
        out._trained_at = trained_at
        if trained_at:
            out._index.set_direct_map_type(faiss.DirectMap.Hashtable)
        if out._index.d != dim:
            raise ValueError("face index is corrupt: dimension mismatch")
        return out


def faiss_index_factory(*, ivf_min_faces: int = 20_000, nprobe: int = 12) -> Callable[[int], FaceIndex]:
    """An ``IndexFactory`` for ``Engine``: today's faiss index (flat, then IVF past ``ivf_min_faces``)."""
    return lambda dim: FaceIndex(dim, ivf_min_faces=ivf_min_faces, nprobe=nprobe)
