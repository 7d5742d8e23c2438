"""The nearest-neighbour index of a dataset's faces (faiss), which is also where their embeddings live.

Small datasets use an exact flat index. Past ``ivf_min_faces`` the index becomes an inverted file (IVF-Flat,
about ``2·sqrt(n)`` lists) so a search touches a few lists instead of every face: adding k faces costs
O(k · nprobe · n/nlist), not O(k · n). The lists are retrained when the dataset has grown fourfold since the
last training, which keeps lists short at an amortised O(1) per face.

Faces are addressed by their row number in the engine's state (faiss id = row). The index keeps the exact
normalised vectors and can return them by id, so the state does not store the embeddings a second time; the
whole index serialises to bytes that travel with the dataset.
"""

from __future__ import annotations

import faiss
import numpy as np

_TRAIN_POINTS_PER_LIST = 40  # k-means sample size per list; faiss needs >= 39 to stay quiet
_KMEANS_ITERATIONS = 12
_SEED = 1234


def _nlist_for(n: int) -> int:
    """About 2·sqrt(n) lists, never more than the training sample can support."""
    return int(max(1, min(8192, round(2 * np.sqrt(n)), n // _TRAIN_POINTS_PER_LIST)))


class FaceIndex:
    """Inner-product search over normalised embeddings keyed by int64 ids."""

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
        self._index.add_with_ids(vectors, ids)
        n = self.ntotal
        if (not self.is_ivf and n >= self.ivf_min_faces) or (self.is_ivf and n >= 4 * self._trained_at):
            self._retrain()

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
        k = max(1, min(k, self.ntotal))
        if len(queries) == 0 or self.ntotal == 0:
            return np.zeros((len(queries), k), np.float32), np.full((len(queries), k), -1, np.int64)
        if self.is_ivf:
            faiss.extract_index_ivf(self._index).nprobe = self.nprobe
        sims, ids = self._index.search(queries, k)
        return sims, ids

    def _retrain(self) -> None:
        """Rebuild as IVF-Flat with lists sized for the current number of faces."""
        ids = self.all_ids()
        vectors = self.vectors(ids)
        n = len(ids)
        nlist = _nlist_for(n)
        sample = vectors[:: max(1, n // (nlist * _TRAIN_POINTS_PER_LIST))]
        kmeans = faiss.Kmeans(self.dim, nlist, niter=_KMEANS_ITERATIONS, seed=_SEED, spherical=True)
        kmeans.train(sample)
        quantizer = faiss.IndexFlatIP(self.dim)
        quantizer.add(kmeans.centroids)
        ivf = faiss.IndexIVFFlat(quantizer, self.dim, nlist, faiss.METRIC_INNER_PRODUCT)
        ivf.is_trained = True
        ivf.own_fields = True
        quantizer.this.disown()
        ivf.set_direct_map_type(faiss.DirectMap.Hashtable)
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
        header = np.frombuffer(data[:32], dtype=np.int64)
        if len(header) != 4:
            raise ValueError("not a facegroup face index")
        dim, ivf_min_faces, nprobe, trained_at = (int(x) for x in header)
        out = cls(dim, ivf_min_faces=ivf_min_faces, nprobe=nprobe)
        out._index = faiss.deserialize_index(np.frombuffer(data[32:], dtype=np.uint8))
        out._trained_at = trained_at
        if trained_at:
            out._index.set_direct_map_type(faiss.DirectMap.Hashtable)
        if out._index.d != dim:
            raise ValueError("face index is corrupt: dimension mismatch")
        return out
