"""Everything the engine remembers about one dataset between updates, and its bytes form.

A face is a row: arrays hold its quality, image, cluster and flags; its normalised embedding lives in the
neighbour index (``neighbours.NeighbourIndex``: in memory, or Milvus) under the row number. Rows are never reused (a removed face only becomes dead), so ids in the
index stay valid; a full re-cluster compacts them. A cluster is a code into per-cluster arrays holding the
sum of its members' embeddings (float64, so adding and removing faces does not drift) and its size: that is
all average linkage needs to compare a face or a cluster with it.

``to_bytes`` / ``from_bytes`` give one blob (a zip of numpy arrays and a JSON header; no pickle) for the store to
keep per dataset. The blob holds no vectors: they live in the index, which the caller restores (see
``from_bytes``, ``indexed_rows`` and ``fill_index``). Version 1 blobs (which carried a faiss index) still load:
their index member is ignored and the vectors are restored like any other's, so reading them needs no faiss.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable, Iterable

import numpy as np

from immray.clustering.neighbours import IndexFactory, NeighbourIndex, exact_index, normalise
from immray.clustering.types import FaceId, ImageId

_FORMAT = "immray-clustering-state"
_VERSION = 2  # 2: no index inside (1 held a faiss index, ignored on load)
_READABLE = (1, 2)
INDEPENDENT = -1
_ROWS_PER_BLOCK = 32_768  # faces per block in bulk vector work (~50 MB of float32 at a time)


class _Column:
    """A numpy array that grows by appending, with amortised O(1) cost per row."""

    def __init__(self, dtype: type | np.dtype, width: int | None = None, data: np.ndarray | None = None):
        shape = (0,) if width is None else (0, width)
        self._buf = np.zeros(shape, dtype) if data is None else np.ascontiguousarray(data, dtype)
        self._n = len(self._buf)

    @property
    def data(self) -> np.ndarray:
        return self._buf[: self._n]

    def __len__(self) -> int:
        return self._n

    def append(self, rows: np.ndarray) -> None:
        rows = np.asarray(rows, self._buf.dtype)
        need = self._n + len(rows)
        if need > len(self._buf):
            grown = np.zeros((max(need, 2 * len(self._buf), 16), *self._buf.shape[1:]), self._buf.dtype)
            grown[: self._n] = self._buf[: self._n]
            self._buf = grown
        self._buf[self._n : need] = rows
        self._n = need


def scatter_add(sums: np.ndarray, counts: np.ndarray, codes: np.ndarray, vectors: np.ndarray, step: int):
    """sums[codes] += vectors and counts[codes] += step, for repeated codes, in a fixed summation order."""
    if not len(codes):
        return
    order = np.argsort(codes, kind="stable")
    codes, vectors = codes[order], vectors[order]
    starts = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]])
    sums[codes[starts]] += np.add.reduceat(vectors, starts, axis=0)
    counts[codes[starts]] += step * np.diff(np.r_[starts, len(codes)])


def _member(name: str) -> zipfile.ZipInfo:
    """A zip entry with a fixed timestamp, so equal states give equal bytes."""
    return zipfile.ZipInfo(name, date_time=(2020, 9, 30, 0, 0, 0))


def face_key(face_id: FaceId) -> tuple[int, int | str]:
    """Sort key that orders ints before strings, so mixed ids still sort deterministically."""
    return (0, face_id) if isinstance(face_id, int) else (1, face_id)


class ClusterState:
    """The clusters of one dataset: faces, their clusters and names, and the user's constraints."""

    def __init__(
        self,
        salt: str = "",
        *,
        index_factory: IndexFactory = exact_index,
        smooth_k: int = 3,
        smooth_sharpness: float = 30.0,
        smooth_floor: float = 0.9,
    ) -> None:
        # ``salt`` seeds cluster ids (give the dataset's id, so two datasets never share cluster ids).
        self.salt = salt
        self.index_factory = index_factory  # makes the index when the first face arrives
        # How faces are smoothed (see smoothing.py). Fixed for the life of a state: the cluster sums are
        # sums of smoothed vectors; a full re-cluster may change them.
        self.smooth_k = smooth_k
        self.smooth_sharpness = smooth_sharpness
        self.smooth_floor = smooth_floor
        self.nbr = _Column(np.int64, smooth_k)  # each face's closest neighbours (rows), -1 padded
        self.nbr_sim = _Column(np.float32, smooth_k)
        self.index: NeighbourIndex | None = None
        self.face_ids: list[FaceId] = []
        self.row_of: dict[FaceId, int] = {}
        self.quality = _Column(np.float32)
        self.image = _Column(np.int64)
        self.cluster = _Column(np.int64)
        self.pinned = _Column(np.bool_)  # the user put this face where it is (or took it out): never moved
        self.alive = _Column(np.bool_)
        self.image_ids: list[ImageId] = []
        self.image_code: dict[ImageId, int] = {}
        self.cluster_ids: list[str] = []
        self.code_of: dict[str, int] = {}  # live clusters only
        self.sums: _Column | None = None
        self.counts = _Column(np.int64)
        self.names: list[str | None] = []
        self.apart: set[tuple[int, int]] = set()  # (row, cluster code): the user took this face out of it
        self.created = 0  # clusters created so far; part of the seed of the next cluster id

    # --- reading -----------------------------------------------------------------------------------------

    @property
    def dim(self) -> int | None:
        return None if self.index is None else self.index.dim

    @property
    def n_faces(self) -> int:
        return int(self.alive.data.sum())

    @property
    def n_clusters(self) -> int:
        return len(self.code_of)

    def __contains__(self, face_id: object) -> bool:
        row = self.row_of.get(face_id)  # type: ignore[arg-type]
        return row is not None and bool(self.alive.data[row])

    def cluster_of(self, face_id: FaceId) -> str | None:
        """The face's cluster id, or None when it is independent. KeyError for an unknown face."""
        if face_id not in self:
            raise KeyError(face_id)
        code = int(self.cluster.data[self.row_of[face_id]])
        return None if code == INDEPENDENT else self.cluster_ids[code]

    def clusters(self) -> dict[str, list[FaceId]]:
        """Every cluster with its faces (sorted by face id). O(n): for tests, exports and small datasets."""
        out: dict[str, list[FaceId]] = {cid: [] for cid in self.code_of}
        rows = np.flatnonzero(self.alive.data & (self.cluster.data >= 0))
        for row in rows.tolist():
            out[self.cluster_ids[int(self.cluster.data[row])]].append(self.face_ids[row])
        for faces in out.values():
            faces.sort(key=face_key)
        return dict(sorted(out.items()))

    def independent_faces(self) -> list[FaceId]:
        rows = np.flatnonzero(self.alive.data & (self.cluster.data == INDEPENDENT))
        return sorted((self.face_ids[r] for r in rows.tolist()), key=face_key)

    def name_of(self, cluster_id: str) -> str | None:
        return self.names[self.code_of[cluster_id]]

    def members(self, codes: Iterable[int]) -> np.ndarray:
        """Rows of the live faces in these clusters (one vectorised pass over the cluster column)."""
        codes = np.fromiter(codes, dtype=np.int64)
        if not len(codes):
            return np.zeros(0, np.int64)
        wanted = np.zeros(len(self.cluster_ids) + 1, bool)  # +1: the last slot answers for INDEPENDENT
        wanted[codes] = True
        return np.flatnonzero(wanted[self.cluster.data] & self.alive.data)

    def indexed_rows(self) -> tuple[np.ndarray, list[FaceId]]:
        """The rows the index must hold (every live face's), ascending, with their face ids: what a caller
        restoring the index after ``from_bytes`` puts back (``fill_index``)."""
        rows = np.flatnonzero(self.alive.data).astype(np.int64)
        return rows, [self.face_ids[r] for r in rows.tolist()]

    def fill_index(
        self, embeddings_of: Callable[[list[FaceId]], np.ndarray], batch: int = _ROWS_PER_BLOCK
    ) -> None:
        """Put every live face's vector into the (empty) index, in batches: ``embeddings_of(face_ids)`` gives
        the embeddings exactly as the engine was given them ((n, dim), not necessarily normalised); they are
        normalised as when they were added, so the restored state computes the same results bit for bit. ValueError when an
        embedding is missing, of another dimension, zero or not finite."""
        if self.index is None:
            return
        rows, face_ids = self.indexed_rows()
        for lo in range(0, len(rows), batch):
            part = rows[lo : lo + batch]
            raw = np.asarray(embeddings_of(face_ids[lo : lo + batch]), np.float32)
            if raw.shape != (len(part), self.index.dim):
                raise ValueError(
                    f"expected {len(part)} embeddings of {self.index.dim} dimensions, got shape {raw.shape}"
                )
            self.index.add(part, normalise(raw))

    def embeddings(self, rows: np.ndarray) -> np.ndarray:
        """The normalised embeddings of ``rows``, as given."""
        assert self.index is not None
        return self.index.vectors(rows)

    def smoothed(self, rows: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """The smoothed vectors of ``rows``: what clusters are made of (see smoothing.py). Computed in
        blocks, into ``out`` if given (float32, one row per face)."""
        rows = np.asarray(rows, np.int64)
        if out is None:
            if len(rows) <= _ROWS_PER_BLOCK:
                return self._smoothed(rows)
            assert self.index is not None
            out = np.empty((len(rows), self.index.dim), np.float32)
        for lo in range(0, len(rows), _ROWS_PER_BLOCK):
            out[lo : lo + _ROWS_PER_BLOCK] = self._smoothed(rows[lo : lo + _ROWS_PER_BLOCK])
        return out

    def _smoothed(self, rows: np.ndarray) -> np.ndarray:
        base = self.embeddings(rows)
        if self.smooth_k == 0 or not len(rows):
            return base
        nbr = self.nbr.data[rows]
        used = nbr >= 0
        if not used.any():
            return base
        ids, where = np.unique(nbr[used], return_inverse=True)
        weights = np.zeros(nbr.shape, np.float32)
        weights[used] = self.nbr_sim.data[rows][used] ** np.float32(self.smooth_sharpness)
        gathered = np.zeros((*nbr.shape, base.shape[1]), np.float32)
        gathered[used] = self.embeddings(ids)[where]
        out = base + np.einsum("rk,rkd->rd", weights, gathered)
        return out / np.linalg.norm(out, axis=1, keepdims=True)

    # --- writing (used by the engine) --------------------------------------------------------------------

    def intern_image(self, image_id: ImageId) -> int:
        code = self.image_code.get(image_id)
        if code is None:
            code = self.image_code[image_id] = len(self.image_ids)
            self.image_ids.append(image_id)
        return code

    def add_faces(self, face_ids: list[FaceId], vectors: np.ndarray, quality: np.ndarray, images: list[int]):
        """Append faces as independent rows; returns their rows."""
        if self.index is None:
            self.index = self.index_factory(vectors.shape[1])
            self.sums = _Column(np.float64, vectors.shape[1])
        start = len(self.face_ids)
        rows = np.arange(start, start + len(face_ids), dtype=np.int64)
        for fid, row in zip(face_ids, rows.tolist(), strict=True):
            self.row_of[fid] = row
        self.face_ids.extend(face_ids)
        self.quality.append(quality)
        self.image.append(np.asarray(images, np.int64))
        self.cluster.append(np.full(len(rows), INDEPENDENT, np.int64))
        self.pinned.append(np.zeros(len(rows), bool))
        self.alive.append(np.ones(len(rows), bool))
        self.nbr.append(np.full((len(rows), self.smooth_k), -1, np.int64))
        self.nbr_sim.append(np.zeros((len(rows), self.smooth_k), np.float32))
        self.index.add(rows, vectors)
        return rows

    def new_cluster(self, cluster_id: str, name: str | None = None) -> int:
        assert self.sums is not None
        code = len(self.cluster_ids)
        self.cluster_ids.append(cluster_id)
        self.code_of[cluster_id] = code
        self.sums.append(np.zeros((1, self.sums.data.shape[1])))
        self.counts.append(np.zeros(1, np.int64))
        self.names.append(name)
        return code

    def assign(self, rows: np.ndarray, codes: np.ndarray | int) -> None:
        """Move faces (rows) into clusters ``codes`` (or INDEPENDENT), keeping sums and counts exact."""
        rows = np.asarray(rows, np.int64)
        if not len(rows):
            return
        assert self.sums is not None
        codes = np.broadcast_to(np.asarray(codes, np.int64), rows.shape)
        for lo in range(0, len(rows), _ROWS_PER_BLOCK):  # in blocks, to bound memory at a million faces
            part, to = rows[lo : lo + _ROWS_PER_BLOCK], codes[lo : lo + _ROWS_PER_BLOCK]
            old = self.cluster.data[part]
            vectors = self.smoothed(part).astype(np.float64)
            leaving = old >= 0
            scatter_add(self.sums.data, self.counts.data, old[leaving], -vectors[leaving], -1)
            joining = to >= 0
            scatter_add(self.sums.data, self.counts.data, to[joining], vectors[joining], 1)
        self.cluster.data[rows] = codes

    def drop_cluster(self, code: int) -> None:
        """Forget a cluster that has no face left."""
        assert self.sums is not None
        self.code_of.pop(self.cluster_ids[code], None)
        self.sums.data[code] = 0.0
        self.counts.data[code] = 0
        self.apart = {(r, c) for r, c in self.apart if c != code}

    # --- bytes -------------------------------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        header = {
            "format": _FORMAT,
            "version": _VERSION,
            "salt": self.salt,
            "dim": self.dim,
            "smooth_k": self.smooth_k,
            "smooth_sharpness": self.smooth_sharpness,
            "smooth_floor": self.smooth_floor,
            "face_ids": self.face_ids,
            "image_ids": self.image_ids,
            "cluster_ids": self.cluster_ids,
            "live_clusters": sorted(self.code_of.values()),
            "names": self.names,
            "created": self.created,
        }
        arrays = {
            "quality": self.quality.data,
            "image": self.image.data,
            "cluster": self.cluster.data,
            "pinned": self.pinned.data,
            "alive": self.alive.data,
            "nbr": self.nbr.data,
            "nbr_sim": self.nbr_sim.data,
            "counts": self.counts.data,
            "apart": np.array(sorted(self.apart), np.int64).reshape(-1, 2),
        }
        if self.sums is not None:
            arrays["sums"] = self.sums.data
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
            zf.writestr(_member("header.json"), json.dumps(header, separators=(",", ":")))
            for name, arr in arrays.items():
                with zf.open(_member(f"{name}.npy"), "w", force_zip64=True) as fh:
                    np.save(fh, arr, allow_pickle=False)
        return buf.getvalue()

    @classmethod
    def from_bytes(
        cls, data: bytes, index: NeighbourIndex | None = None, *, index_factory: IndexFactory = exact_index
    ) -> ClusterState:
        """Load a state saved by ``to_bytes``; ValueError (never a crash) for anything else.

        ``index`` is the index that holds (or will hold) the vectors of the state's faces, under their rows:
        Milvus in production. Without it, ``index_factory`` makes an empty one, which the caller must fill
        (``fill_index``) before the state is used. ``index_factory`` also makes the index of a state that had
        no face yet.
        """
        try:
            zf = zipfile.ZipFile(io.BytesIO(data))
            header = json.loads(zf.read("header.json"))
        except (zipfile.BadZipFile, KeyError, ValueError, TypeError) as exc:
            raise ValueError("not a immray clustering state") from exc
        if not isinstance(header, dict):
            raise ValueError("not a immray clustering state")
        try:
            return cls._parse(zf, header, index, index_factory)
        except ValueError:
            raise
        except (KeyError, TypeError, IndexError, EOFError, OSError, RuntimeError, zipfile.BadZipFile) as exc:
            raise ValueError(f"clustering state is corrupt: {exc!r}") from exc

    @classmethod
    def _parse(
        cls, zf: zipfile.ZipFile, header: dict, index: NeighbourIndex | None, index_factory: IndexFactory
    ) -> ClusterState:
        if header.get("format") != _FORMAT or header.get("version") not in _READABLE:
            raise ValueError(
                f"unsupported clustering state format: {header.get('format')} v{header.get('version')}"
            )

        def arr(name: str) -> np.ndarray:
            with zf.open(f"{name}.npy") as fh:
                return np.load(fh, allow_pickle=False)

        st = cls(
            header["salt"],
            index_factory=index_factory,
            smooth_k=header["smooth_k"],
            smooth_sharpness=header["smooth_sharpness"],
            smooth_floor=header["smooth_floor"],
        )
        st.face_ids = header["face_ids"]
        st.row_of = {fid: i for i, fid in enumerate(st.face_ids)}
        st.quality = _Column(np.float32, data=arr("quality"))
        st.image = _Column(np.int64, data=arr("image"))
        st.cluster = _Column(np.int64, data=arr("cluster"))
        st.pinned = _Column(np.bool_, data=arr("pinned"))
        st.alive = _Column(np.bool_, data=arr("alive"))
        st.nbr = _Column(np.int64, st.smooth_k, data=arr("nbr").reshape(-1, st.smooth_k))
        st.nbr_sim = _Column(np.float32, st.smooth_k, data=arr("nbr_sim").reshape(-1, st.smooth_k))
        st.image_ids = header["image_ids"]
        st.image_code = {iid: i for i, iid in enumerate(st.image_ids)}
        st.cluster_ids = header["cluster_ids"]
        st.code_of = {st.cluster_ids[c]: c for c in header["live_clusters"]}
        st.counts = _Column(np.int64, data=arr("counts"))
        st.names = header["names"]
        st.apart = {(int(r), int(c)) for r, c in arr("apart")}
        st.created = header["created"]
        if "sums.npy" in zf.namelist():  # the state has had faces: it has a dimension and cluster sums
            sums = arr("sums")
            dim = header["dim"] if header["version"] >= 2 else sums.shape[1]
            if not isinstance(dim, int) or isinstance(dim, bool) or sums.ndim != 2 or sums.shape[1] != dim:
                raise ValueError("clustering state is corrupt: embedding dimension")
            if index is None:
                index = index_factory(dim)
            elif index.dim != dim:
                raise ValueError(f"the index holds {index.dim}-d vectors, the clustering state {dim}-d")
            st.index = index
            st.sums = _Column(np.float64, dim, data=sums)
        n = len(st.face_ids)
        if not (len(st.quality) == len(st.image) == len(st.cluster) == len(st.alive) == len(st.nbr) == n):
            raise ValueError("clustering state is corrupt: column lengths differ")
        return st
